"""Facial expression per face-track clip: MAE-DFER (LGI-Former, DFEW classes) through ONNX Runtime.

A clip is 16 face crops of one track, 160x160 RGB. The model reads expression from motion as
well as appearance, so it runs on clips, not frames; it is the heavy path (about 99 GFLOP a
clip), batched across tracks and calls (``pipeline.compute.clip_server``) and run on the GPU where
there is one (CUDAExecutionProvider of onnxruntime-gpu), else on the CPU.

The ONNX file comes from ``models/export_mae_dfer_onnx.py`` (or from a ``.pth`` checkpoint,
exported once per worker into the model-store cache by ``load_clip_model``); its metadata
carries the class names, the input normalisation and the source checkpoint's digest.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.digests import file_sha256
from pipeline.networks.mae_dfer_contract import CLASSES, CLIP_FRAMES, CLIP_SIZE, INPUT_MEAN, INPUT_STD
from pipeline.settings import Settings
from pipeline.stages import contract

if TYPE_CHECKING:
    from pipeline.networks.lgi_former import LGIFormerConfig

BACKEND = "mae-dfer-onnx"


def clip_from_crops(crops: Sequence[np.ndarray], num_frames: int = CLIP_FRAMES, size: int = CLIP_SIZE) -> np.ndarray:
    """A (num_frames, size, size, 3) uint8 clip from one track's RGB crops, in time order.

    Sampling: ``num_frames`` indices evenly spaced over the crops, first and last included
    (rounded down), so any window of a track becomes one clip; with fewer crops than frames,
    each crop once in order and then the last repeated, as the authors pad short videos. The
    caller picks the window: the authors' clips span 64 source frames (16 at stride 4).
    Each crop is resized to size x size, aspect ratio not kept (as the authors); INTER_AREA
    when shrinking (close to the antialiased bilinear resize of PIL they use), bilinear when
    enlarging.
    """
    import cv2

    if not crops:
        raise ValueError("clip_from_crops needs at least one crop")
    if len(crops) >= num_frames:
        picks = np.linspace(0, len(crops) - 1, num_frames).astype(int)
    else:
        picks = np.minimum(np.arange(num_frames), len(crops) - 1)
    frames = []
    for i in picks:
        crop = np.asarray(crops[i])
        if crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"crops must be HxWx3 RGB, got shape {crop.shape}")
        if crop.shape[:2] != (size, size):
            shrink = crop.shape[0] > size or crop.shape[1] > size
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        frames.append(crop.astype(np.uint8, copy=False))
    return np.stack(frames)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def execution_providers(device: str | Sequence[str] = "auto") -> list[str]:
    """ONNX Runtime providers for ``device``: "auto" (CUDA when onnxruntime-gpu has it), "cpu",
    "cuda" (an error without it), or an explicit provider list."""
    import onnxruntime as ort

    if not isinstance(device, str):
        return list(device)
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("auto", "cuda"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda":
            raise RuntimeError(
                f"device 'cuda' asked for, but ONNX Runtime only has {available} (install onnxruntime-gpu)"
            )
        return ["CPUExecutionProvider"]
    raise ValueError(f"device must be auto, cpu, cuda or a provider list, got {device!r}")


class ClipExpressionModel:
    """An exported MAE-DFER ONNX model: uint8 clips (N, T, H, W, 3) -> class probabilities (N, C)."""

    def __init__(
        self, onnx_path: str | Path, providers: str | Sequence[str] = "auto", *, batch_size: int = 16, threads: int = 0
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (all cores)
        self._session = ort.InferenceSession(str(onnx_path), options, providers=execution_providers(providers))
        self.batch_size = batch_size
        meta = self._session.get_modelmeta().custom_metadata_map
        if "lgi_former_config" not in meta:
            raise ValueError(
                f"{onnx_path} was not exported by models/export_mae_dfer_onnx.py (no lgi_former_config metadata)"
            )
        self.classes: tuple[str, ...] = tuple(json.loads(meta["classes"]))
        self._mean = np.asarray(json.loads(meta["input_mean"]), np.float32) * 255.0
        self._inv_std = 1.0 / (np.asarray(json.loads(meta["input_std"]), np.float32) * 255.0)
        _, _, frames, height, width = self._session.get_inputs()[0].shape
        self.clip_shape: tuple[int, int, int, int] = (frames, height, width, 3)
        self.providers: list[str] = self._session.get_providers()
        digest = file_sha256(onnx_path)
        source = meta.get("checkpoint_sha256", "unknown")
        self.version = f"{BACKEND}:checkpoint-sha256={source[:16]},onnx-sha256={digest[:16]}"

    def model_version(self) -> str:
        """The exact weights (source checkpoint and ONNX file digests), for stage_metrics."""
        return self.version

    def normalise(self, clips: np.ndarray) -> np.ndarray:
        """uint8 (N, T, H, W, 3) RGB -> float32 (N, 3, T, H, W), the authors' normalisation."""
        return _normalise(clips, self._mean, self._inv_std)

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) float32, rows summing to 1, columns in ``self.classes`` order."""
        clips = _checked(clips, self.clip_shape)
        out = np.empty((len(clips), len(self.classes)), np.float32)
        for start in range(0, len(clips), self.batch_size):
            batch = self.normalise(clips[start : start + self.batch_size])
            (logits,) = self._session.run(["logits"], {"clips": batch})
            out[start : start + len(batch)] = _softmax(logits.astype(np.float64))
        return out


class TorchClipModel:
    """The same model from its ``.pth`` checkpoint, run by torch (fp16 autocast on CUDA).

    For GPU nodes where torch reaches CUDA but onnxruntime-gpu cannot (the lock's
    onnxruntime-gpu targets CUDA 13, torch CUDA 12.8: docker/ray-gpu.Dockerfile). Same inputs,
    outputs and normalisation as ClipExpressionModel.
    """

    def __init__(self, checkpoint: str | Path, device: str = "cpu", *, batch_size: int = 16,
                 config: LGIFormerConfig | None = None):
        import torch

        from pipeline.networks.lgi_former import PAPER_CONFIG
        from pipeline.networks.mae_dfer_checkpoint import load_checkpoint

        self._torch = torch
        self.device = torch.device(device)
        self.model = load_checkpoint(str(checkpoint), config or PAPER_CONFIG).to(self.device).eval()
        c = self.model.config
        self.batch_size = batch_size
        self.classes: tuple[str, ...] = CLASSES
        self.clip_shape: tuple[int, int, int, int] = (c.num_frames, c.image_size, c.image_size, 3)
        self._mean = np.asarray(INPUT_MEAN, np.float32) * 255.0
        self._inv_std = 1.0 / (np.asarray(INPUT_STD, np.float32) * 255.0)
        self.providers: list[str] = [f"torch:{self.device.type}"]
        digest = file_sha256(checkpoint)
        self.version = f"mae-dfer-torch:checkpoint-sha256={digest[:16]}"

    def predict(self, clips: np.ndarray) -> np.ndarray:
        torch = self._torch
        clips = _checked(clips, self.clip_shape)
        out = np.empty((len(clips), len(self.classes)), np.float32)
        use_fp16 = self.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16, enabled=use_fp16):
            for start in range(0, len(clips), self.batch_size):
                batch = torch.from_numpy(_normalise(clips[start : start + self.batch_size], self._mean, self._inv_std))
                logits = self.model(batch.to(self.device)).float().cpu().numpy()
                out[start : start + len(batch)] = _softmax(logits.astype(np.float64))
        return out


def _normalise(clips: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    x = (clips.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))


def _checked(clips: np.ndarray, clip_shape: tuple[int, ...]) -> np.ndarray:
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.shape[1:] != clip_shape:
        raise ValueError(f"clips must be uint8 (N, {', '.join(map(str, clip_shape))}), got {clips.dtype} {clips.shape}")
    return clips


def onnx_path_for(model_path: str, settings: Settings, config: LGIFormerConfig | None = None) -> Path:
    """Local ONNX file for ``vision.clip_model``: an .onnx as is; a .pth checkpoint exported
    once into the model-store cache (keyed by the checkpoint's digest), as the paper's model
    unless ``config`` says otherwise. Exporting needs torch and onnxscript on the worker."""
    from pipeline.storage.model_store import resolve_model_path

    local = resolve_model_path(model_path, settings)
    if local.suffix == ".onnx":
        return local
    from pipeline.networks.lgi_former import PAPER_CONFIG
    from pipeline.networks.mae_dfer_checkpoint import export_checkpoint_onnx

    digest = file_sha256(local)
    out = Path(settings.model_store.cache_dir).expanduser() / "mae-dfer-onnx" / f"{digest[:16]}.onnx"
    if not out.exists():
        staging = out.with_name(f"{out.name}.part-{os.getpid()}")
        export_checkpoint_onnx(str(local), staging, config or PAPER_CONFIG)
        os.replace(staging, out)  # atomic: concurrent workers each export, the last rename wins
    return out


@functools.lru_cache(maxsize=2)
def _cached_model(onnx_path: str, device: str, batch_size: int, threads: int) -> ClipExpressionModel:
    return ClipExpressionModel(onnx_path, device, batch_size=batch_size, threads=threads)


@functools.lru_cache(maxsize=2)
def _cached_torch_model(checkpoint: str, device: str, batch_size: int) -> TorchClipModel:
    return TorchClipModel(checkpoint, device, batch_size=batch_size)


def choose_runtime(runtime: str, device: str, is_checkpoint: bool) -> tuple[str, str]:
    """(runtime, device) for the heavy model. "auto" takes ONNX Runtime, except when only torch
    can reach the GPU: a .pth checkpoint, a GPU wanted, torch seeing CUDA and ONNX Runtime not."""
    if runtime not in ("auto", "onnxruntime", "torch"):
        raise ValueError(f"vision.clip_runtime must be auto, onnxruntime or torch, got {runtime!r}")
    if runtime == "onnxruntime" or (runtime == "auto" and not is_checkpoint):
        return "onnxruntime", device
    import torch

    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if runtime == "auto":
        import onnxruntime as ort

        if not cuda or "CUDAExecutionProvider" in ort.get_available_providers():
            return "onnxruntime", device
    if runtime == "torch" and device == "cuda" and not cuda:
        raise RuntimeError("vision.device 'cuda' asked for, but torch sees no CUDA device")
    return "torch", "cuda" if cuda else "cpu"


def load_clip_model(settings: Settings) -> ClipExpressionModel | TorchClipModel:
    """The model of ``settings.vision.clip_model`` (local or s3://, .onnx or .pth), once per
    process, in the runtime ``vision.clip_runtime`` picks (see choose_runtime)."""
    from pipeline.storage.model_store import resolve_model_path

    vision = settings.vision
    if not vision.clip_model:
        raise ValueError("vision.clip_model is not set")
    local = resolve_model_path(vision.clip_model, settings)
    runtime, device = choose_runtime(vision.clip_runtime, vision.device, local.suffix != ".onnx")
    if runtime == "torch":
        if local.suffix == ".onnx":
            raise ValueError("vision.clip_runtime 'torch' needs the .pth checkpoint, not an .onnx export")
        return _cached_torch_model(str(local), device, vision.clip_batch_size)
    path = onnx_path_for(vision.clip_model, settings)
    return _cached_model(str(path), device, vision.clip_batch_size, vision.threads)


# A part of the face branch's one pass over the video, timed inside it.
# The runtime (ONNX or torch) and device are known once the model is loaded: the face branch
# reports what ran.
STAGE = contract.Stage("face_expression_clips", backend=contract.fixed(BACKEND), model_key="face_expression_clips")
