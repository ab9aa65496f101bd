"""The opt-in voice cues: openSMILE's eGeMAPSv02 loudness and F0 (``voice.backend =
"opensmile-egemaps"``). openSMILE carries the audEERING Research License (non-commercial; the
PyPI classifier's "MIT" is wrong), so it is an optional extra (``pip install
'callaffect[opensmile]'``) and is imported only when this backend is chosen."""

from __future__ import annotations

import functools
from importlib.metadata import version

import numpy as np

NAME = "opensmile-egemaps"
HOP_S = 0.01


def model_version() -> str:
    return f"opensmile=={version('opensmile')} eGeMAPSv02"


@functools.lru_cache(maxsize=1)
def _smile():
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )


def features(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(Loudness_sma3, F0semitoneFrom27.5Hz_sma3nz) every 10 ms; F0 is 0 where unvoiced."""
    frames = _smile().process_signal(samples, sample_rate)
    return (frames["Loudness_sma3"].to_numpy(np.float32), frames["F0semitoneFrom27.5Hz_sma3nz"].to_numpy(np.float32))
