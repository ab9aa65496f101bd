"""Diarization: one channel's audio + speech regions -> speaker turns (pyannote.core.Annotation).

Two backends, chosen by ``diarization.backend``: ``embedded`` (Resemblyzer's bundled encoder and
clustering, pipeline.stages.audio.embedded_diarizer) and ``pyannote`` (a saved pyannote.audio
pipeline from the model store, pipeline.stages.audio.pyannote_diarizer). Both label speakers
SPEAKER_00, SPEAKER_01, ... in order of first appearance.
"""

from __future__ import annotations

import numpy as np
from pyannote.core import Annotation, Timeline

from pipeline.records import SpeakerHints
from pipeline.settings import Settings
from pipeline.stages import contract

BACKENDS = {"embedded": "embedded-resemblyzer", "pyannote": "pyannote"}


def _check_backend(settings: Settings) -> str:
    backend = settings.diarization.backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown diarization backend {backend!r} ({', '.join(BACKENDS)})")
    return backend


def diarize(samples: np.ndarray, sample_rate: int, speech: Timeline, settings: Settings, hints: SpeakerHints) -> Annotation:
    """Speaker turns of one channel (or the mono mix) with the configured backend.

    Takes the whole settings: the pyannote backend loads its pipeline through the model store.
    """
    if _check_backend(settings) == "pyannote":
        from pipeline.stages.audio import pyannote_diarizer  # torch + pyannote.audio: only when chosen

        return pyannote_diarizer.diarize_pyannote(samples, sample_rate, settings, hints)
    from pipeline.stages.audio import embedded_diarizer

    return embedded_diarizer.diarize(samples, sample_rate, speech, settings.diarization, hints)


def model_version(settings: Settings) -> str:
    if _check_backend(settings) == "pyannote":
        from pipeline.stages.audio import pyannote_diarizer

        return pyannote_diarizer.model_version(settings)
    from pipeline.stages.audio import embedded_diarizer

    return embedded_diarizer.model_version()


def _device(settings: Settings) -> str:
    return "cpu" if settings.diarization.backend == "embedded" else contract.torch_device(settings.diarization.device)


STAGE = contract.Stage(
    "diarization", backend=lambda s: BACKENDS[_check_backend(s)], run=diarize,
    model_key="diarization", model_version=model_version, device=_device,
)
