"""What a converted mini-Xception ONNX file provides, shared by the converter and the runtime.

Kept free of torch so the runtime (``pipeline.stages.vision.face_expression``) needs only ONNX
Runtime once the file exists; only the one-off conversion imports torch.
"""

from __future__ import annotations


import numpy as np

INPUT_SIZE = 64
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's label order
CONVERTER_VERSION = "1"  # bump when the graph or export changes: cached ONNX files are rebuilt
ONNX_INPUT, ONNX_OUTPUT = "faces", "probs"
PROBE_TOLERANCE = 1e-5  # max abs difference allowed between a file's output and the recorded one


def probe_faces() -> np.ndarray:
    """(2, 1, 64, 64) float32 in [-1, 1]: a fixed, formula-made input to check a converted file."""
    i, j = np.mgrid[:INPUT_SIZE, :INPUT_SIZE]
    pattern = np.stack([(i * 7 + j * 13) % 256, (i * j) % 256]).astype(np.float32)
    return (pattern / 255.0 - 0.5)[:, None] * 2.0
