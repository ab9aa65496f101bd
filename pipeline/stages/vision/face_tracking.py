"""Face tracking: detections on sampled frames linked into tracks whose ids are stable within a call.

Streaming and small: each ``update`` matches the frame's faces to the open tracks' last boxes
with one Hungarian assignment (IoU first, centre distance as a fallback for fast motion), so a
face keeps its id through short misses. Only running sums are kept per track, so memory grows
with the number of tracks, not with the call's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.stages.vision.face_detection import FaceBox
from pipeline.stages import contract

# A centre-distance match also needs the two boxes' sides within this factor of each other,
# so a far (small) face is not handed the id of a near (large) one that just left.
_MAX_SIDE_RATIO = 2.0
_INFEASIBLE = 1e6


@dataclass
class TrackSummary:
    track_id: int
    first_s: float
    last_s: float
    n_detections: int
    mean_box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    mean_score: float


@dataclass
class _Track:
    track_id: int
    first_s: float
    last_s: float
    last_box: np.ndarray  # x0, y0, x1, y1 of the latest detection
    n_detections: int
    box_sum: np.ndarray
    score_sum: float


def _boxes(faces: Sequence[FaceBox]) -> np.ndarray:
    return np.array([[f.x0, f.y0, f.x1, f.y1] for f in faces], dtype=np.float64).reshape(-1, 4)


def _match_costs(
    track_boxes: np.ndarray, face_boxes: np.ndarray, min_iou: float, max_center_shift: float
) -> np.ndarray:
    """(tracks, faces) costs: 1 - IoU where IoU >= min_iou, else 1 + centre shift (in mean box
    sides) where that is <= max_center_shift and the sizes are alike, else infeasible. IoU
    matches therefore always beat fallback ones."""
    t, f = track_boxes[:, None, :], face_boxes[None, :, :]
    inter_w = np.clip(np.minimum(t[..., 2], f[..., 2]) - np.maximum(t[..., 0], f[..., 0]), 0.0, None)
    inter_h = np.clip(np.minimum(t[..., 3], f[..., 3]) - np.maximum(t[..., 1], f[..., 1]), 0.0, None)
    inter = inter_w * inter_h
    area_t = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    area_f = (f[..., 2] - f[..., 0]) * (f[..., 3] - f[..., 1])
    iou = inter / np.maximum(area_t + area_f - inter, 1e-9)

    side_t = ((t[..., 2] - t[..., 0]) + (t[..., 3] - t[..., 1])) / 2.0
    side_f = ((f[..., 2] - f[..., 0]) + (f[..., 3] - f[..., 1])) / 2.0
    centre_t = (t[..., 0:2] + t[..., 2:4]) / 2.0
    centre_f = (f[..., 0:2] + f[..., 2:4]) / 2.0
    shift = np.linalg.norm(centre_t - centre_f, axis=-1) / np.maximum((side_t + side_f) / 2.0, 1e-9)
    alike = np.maximum(side_t, side_f) <= _MAX_SIDE_RATIO * np.minimum(side_t, side_f)

    costs = np.full(iou.shape, _INFEASIBLE)
    near = alike & (shift <= max_center_shift)
    costs[near] = 1.0 + shift[near]
    overlapping = iou >= min_iou
    costs[overlapping] = 1.0 - iou[overlapping]
    return costs


class FaceTracker:
    """Links per-frame face detections into tracks.

    min_iou: overlap with a track's last box that counts as the same face.
    max_gap_s: a track unseen for longer than this is closed; a face reappearing later gets a
        new id. Ids are never reused within the tracker's life (one call).
    max_center_shift: fallback for fast motion, in mean box sides between centres.
    """

    def __init__(self, min_iou: float = 0.3, max_gap_s: float = 1.0, max_center_shift: float = 0.5) -> None:
        self.min_iou = min_iou
        self.max_gap_s = max_gap_s
        self.max_center_shift = max_center_shift
        self._tracks: dict[int, _Track] = {}
        self._open: list[int] = []
        self._next_id = 0
        self._last_t = -np.inf

    def update(self, t: float, faces: Sequence[FaceBox]) -> list[int]:
        """Track id for each face of the frame at time t (seconds, non-decreasing), in order."""
        if t < self._last_t:
            raise ValueError(f"frame times must not go backwards: {t} after {self._last_t}")
        self._last_t = t
        self._open = [i for i in self._open if t - self._tracks[i].last_s <= self.max_gap_s]

        face_boxes = _boxes(faces)
        matched: dict[int, int] = {}  # face index -> track id
        if self._open and faces:
            track_boxes = np.stack([self._tracks[i].last_box for i in self._open])
            costs = _match_costs(track_boxes, face_boxes, self.min_iou, self.max_center_shift)
            for row, col in zip(*linear_sum_assignment(costs)):
                if costs[row, col] < _INFEASIBLE:
                    matched[int(col)] = self._open[row]

        ids = []
        for k, face in enumerate(faces):
            box = face_boxes[k]
            if k in matched:
                track = self._tracks[matched[k]]
            else:
                track = _Track(self._next_id, t, t, box, 0, np.zeros(4), 0.0)
                self._next_id += 1
                self._tracks[track.track_id] = track
                self._open.append(track.track_id)
            track.last_s = t
            track.last_box = box
            track.n_detections += 1
            track.box_sum += box
            track.score_sum += face.score
            ids.append(track.track_id)
        return ids

    def summaries(self) -> list[TrackSummary]:
        """Every track so far (open and closed), by id."""
        return [
            TrackSummary(
                track_id=tr.track_id,
                first_s=tr.first_s,
                last_s=tr.last_s,
                n_detections=tr.n_detections,
                mean_box=tuple(float(v) for v in tr.box_sum / tr.n_detections),
                mean_score=tr.score_sum / tr.n_detections,
            )
            for tr in sorted(self._tracks.values(), key=lambda tr: tr.track_id)
        ]


# A part of the face branch's one pass over the video, timed inside it.
STAGE = contract.Stage("face_tracking", backend=contract.fixed("iou-tracker"))
