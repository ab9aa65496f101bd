"""Channel layout: is a two-channel recording one party per channel, or just stereo sound?

Contact-centre recorders often write the agent on one channel and the customer on the other.
Then each channel is diarized and transcribed on its own (no overlap to untangle, cleaner
words). Dual-mono files, files with one dead channel, and stereo room recordings where both
parties are on both channels are analysed as a mono mix.
"""

from __future__ import annotations

from pipeline.records import ChannelLayout
from pipeline.stages import contract


import numpy as np
from pyannote.core import Segment, Timeline

_FRAME_S = 0.05
_SILENT_RMS = 1e-4  # about -80 dBFS: a dead channel
_DUAL_MONO_CORRELATION = 0.9
_DOMINANCE_DB = 6.0
_MIN_DOMINANT_SHARE = 0.6


def _frame_rms(x: np.ndarray, sample_rate: int) -> np.ndarray:
    hop = int(_FRAME_S * sample_rate)
    n = len(x) // hop
    frames = x[: n * hop].reshape(n, hop).astype(np.float64)
    return np.sqrt((frames**2).mean(axis=1) + 1e-12)


def detect_layout(channels: np.ndarray | None, sample_rate: int) -> ChannelLayout:
    if channels is None:
        return ChannelLayout("mono", "single channel")
    left, right = channels
    rms = _frame_rms(left, sample_rate), _frame_rms(right, sample_rate)
    if min(float(np.sqrt((left**2).mean())), float(np.sqrt((right**2).mean()))) < _SILENT_RMS:
        return ChannelLayout("mono", "one channel is silent")
    step = max(1, len(left) // 200_000)  # a subsample is plenty for a correlation
    r = float(np.corrcoef(left[::step], right[::step])[0, 1])
    if r > _DUAL_MONO_CORRELATION:
        return ChannelLayout("mono", f"channels nearly identical (r={r:.2f})")
    level = 20 * np.log10(np.maximum(rms[0], rms[1]))
    active = level > np.percentile(level, 5) + 10  # frames well above the noise floor
    if active.sum() < 10:
        return ChannelLayout("mono", "too little activity to tell channels apart")
    gap = np.abs(20 * np.log10(rms[0][active] / rms[1][active]))
    share = float((gap >= _DOMINANCE_DB).mean())
    if share < _MIN_DOMINANT_SHARE:
        return ChannelLayout("mono", f"both channels carry the same speech ({share:.0%} dominant frames)")
    return ChannelLayout("stereo", f"one party per channel ({share:.0%} of active frames dominated by one channel)")


def drop_crosstalk(
    speech: Timeline, own: np.ndarray, other: np.ndarray, sample_rate: int, margin_db: float = 12.0
) -> Timeline:
    """Speech regions of ``own`` minus those that are only the other party leaking in (echo,
    bleed): regions where the other channel is louder by more than ``margin_db``."""
    kept = []
    for seg in speech:
        a, b = int(seg.start * sample_rate), int(seg.end * sample_rate)
        own_rms = float(np.sqrt((own[a:b].astype(np.float64) ** 2).mean() + 1e-12))
        other_rms = float(np.sqrt((other[a:b].astype(np.float64) ** 2).mean() + 1e-12))
        if 20 * np.log10(other_rms / own_rms) <= margin_db:
            kept.append(Segment(seg.start, seg.end))
    return Timeline(kept)


STAGE = contract.Stage("channels", backend=contract.fixed("energy-rules"), run=detect_layout)
