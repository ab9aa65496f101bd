"""Selective heavy inference: which 16-frame face clips the heavy model (MAE-DFER) sees.

Each track keeps its last 16 square face crops. At most every ``clip_every_s`` per track, and
only where the light model reads arousal at or above ``clip_arousal_trigger``, those crops are
cut into a clip; clips run in batches across the call's tracks.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.networks.mae_dfer_contract import CLIP_FRAMES, CLIP_SIZE
from pipeline.records import FaceAffectWindow
from pipeline.settings import VisionSettings
from pipeline.stages.vision import face_expression
from pipeline.stages.vision.face_readings import TrackReadings, affect_window, recent_arousal
from pipeline.stages.vision.video_frames import SampledFrame


@dataclass(frozen=True)
class _Clip:
    track_id: int
    start: float
    end: float
    frames: np.ndarray  # (16, 160, 160, 3) uint8 RGB


class ClipCollector:
    def __init__(self, vs: VisionSettings, classify: Callable[[np.ndarray], np.ndarray]):
        from pipeline.stages.vision import face_expression_clips

        self._vs = vs
        self._classify = classify
        self._clip_from_crops = face_expression_clips.clip_from_crops
        self._recent: dict[int, deque] = defaultdict(lambda: deque(maxlen=CLIP_FRAMES))
        self._last_check: dict[int, float] = {}  # end of the last clip considered, cut or not
        self._queue: list[_Clip] = []
        self._done: list[tuple[_Clip, np.ndarray]] = []  # with the model's class probabilities

    def add(self, track: int, frame: SampledFrame, box: tuple[float, float, float, float]) -> None:
        self._recent[track].append((frame.t, square_crop(frame.rgb, box, CLIP_SIZE)))

    def _ready(self) -> list[int]:
        """Tracks with 16 crops whose last considered clip is at least clip_every_s old."""
        return [
            track for track, recent in self._recent.items()
            if len(recent) == CLIP_FRAMES and recent[-1][0] - self._last_check.get(track, -np.inf) >= self._vs.clip_every_s
        ]

    def due(self) -> bool:
        return bool(self._ready())

    def maybe_cut(self, readings: dict[int, TrackReadings]) -> None:
        """Consider each ready track's last 16 crops once: cut a clip where the light model
        reads arousal at or above the trigger (every time when the trigger is 0)."""
        for track in self._ready():
            recent = self._recent[track]
            start, end = recent[0][0], recent[-1][0]
            self._last_check[track] = end
            trigger = self._vs.clip_arousal_trigger
            if trigger > 0 and recent_arousal(readings.get(track), start, end, 4 * CLIP_FRAMES) < trigger:
                continue
            self._queue.append(_Clip(track, start, end, self._clip_from_crops([c for _, c in recent])))
        if len(self._queue) >= self._vs.clip_batch_size:
            self._run()

    def _run(self) -> None:
        if self._queue:
            probs = self._classify(np.stack([c.frames for c in self._queue]))
            self._done += list(zip(self._queue, probs))
            self._queue = []

    def finish(self, classes: tuple[str, ...], model: str) -> list[FaceAffectWindow]:
        self._run()
        order = [classes.index(e) for e in face_expression.EMOTIONS]  # the model's order -> the table's
        return [
            affect_window(c.track_id, c.start, c.end, CLIP_FRAMES, np.asarray(p, np.float64)[order], model)
            for c, p in self._done
        ]


def square_crop(rgb: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The face's square crop (box side + 10 % margin), resized to size x size, clipped at edges."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * 1.1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = rgb.shape[:2]
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    right, bottom = left + int(round(side)), top + int(round(side))
    crop = rgb[max(top, 0):min(bottom, h), max(left, 0):min(right, w)]
    pad = ((max(-top, 0), max(bottom - h, 0)), (max(-left, 0), max(right - w, 0)), (0, 0))
    crop = np.pad(crop, pad, mode="edge") if any(p for pair in pad[:2] for p in pair) else crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
