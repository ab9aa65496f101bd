"""The light expression model's readings of one face track, and what is made of them.

Per usable face only its time and class probabilities are kept (floats, never pixels). They
become the track's series for fusion, its pooled face_affect windows, and the arousal that
decides where the heavy clip model is worth running.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.records import FaceAffectWindow, FaceSeries
from pipeline.stages.vision import expression_circumplex, face_expression


@dataclass
class TrackReadings:
    """Per usable face of one track: time and the light model's reading (floats only)."""

    times: list[float] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)


def series(readings: TrackReadings) -> FaceSeries:
    probs = np.stack(readings.probs)
    valence, arousal = expression_circumplex.valence_arousal(probs, face_expression.EMOTIONS)
    confidence = expression_circumplex.confidence(probs)
    return FaceSeries(np.asarray(readings.times), valence, arousal, confidence)


def pooled_windows(track_id: int, readings: TrackReadings, window_s: float, frame_s: float, model: str) -> list[FaceAffectWindow]:
    """The light model's frames pooled per fixed window of the track (mean probabilities).

    A window ends at the grid line, or one frame after its last face when the track (or the
    video) ends earlier, so no row claims time the video does not have."""
    times = np.asarray(readings.times)
    probs = np.stack(readings.probs)
    bins = np.floor(times / window_s).astype(int)
    rows = []
    for b in np.unique(bins):
        inside = bins == b
        end = min((b + 1) * window_s, float(times[inside].max()) + frame_s)
        rows.append(affect_window(track_id, b * window_s, end, int(inside.sum()), probs[inside].mean(axis=0), model))
    return rows


def affect_window(track_id: int, start: float, end: float, n_frames: int, probs: np.ndarray, model: str) -> FaceAffectWindow:
    """One face_affect window from class probabilities in face_expression.EMOTIONS order."""
    valence, arousal = expression_circumplex.valence_arousal(probs[None], face_expression.EMOTIONS)
    confidence = expression_circumplex.confidence(probs[None])
    return FaceAffectWindow(
        track_id=track_id, start=round(float(start), 3), end=round(float(end), 3), n_frames=n_frames,
        probs=tuple(round(float(p), 5) for p in probs), valence=round(float(valence[0]), 4),
        arousal=round(float(arousal[0]), 4), confidence=round(float(confidence[0]), 4), model=model,
    )


def recent_arousal(readings: TrackReadings | None, start: float, end: float, lookback: int) -> float:
    """Mean arousal the light model read between start and end, over the last ``lookback`` faces."""
    if readings is None or not readings.times:
        return 0.0
    times = np.asarray(readings.times[-lookback:])
    probs = np.stack(readings.probs[-lookback:])
    inside = (times >= start) & (times <= end)
    if not inside.any():
        return 0.0
    _, arousal = expression_circumplex.valence_arousal(probs[inside], face_expression.EMOTIONS)
    return float(arousal.mean())
