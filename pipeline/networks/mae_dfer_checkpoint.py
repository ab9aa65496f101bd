"""Load MAE-DFER checkpoints (the authors' ``.pth`` files) into ``LGIFormer``.

Reads what the authors' ``run_class_finetuning.py`` reads, the same way: the state under
``model`` or ``module`` (their ``--model_key model|module``), else the file itself;
``encoder.``/``backbone.`` prefixes stripped; a ``pos_embed`` whose spatial grid differs from
the model's resized bicubically per frame. Then, unlike their non-strict loader, every
remaining key must match the model in name and shape, or loading fails and says which:
a half-loaded classifier gives plausible-looking wrong answers.

Keys that only the self-supervised pre-training model has (decoder, mask token, the encoder's
final norm, which fine-tuning replaces by ``fc_norm``) are dropped, as the authors' loader
drops them, and listed in ``RemappedState.ignored_keys``. A pre-trained-only checkpoint therefore fails for lack of
``fc_norm``/``head``: it has no classifier.

Checkpoints are unpickled with ``weights_only=True`` (tensors and plain containers only), with
``argparse.Namespace`` allowed because the authors' ``save_model`` stores ``args`` in it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.digests import file_sha256
from pipeline.networks.lgi_former import (
    DFEW_CLASSES,
    PAPER_CONFIG,
    LGIFormer,
    LGIFormerConfig,
    export_onnx,
    max_abs_diff_vs_onnx,
)

CONTAINER_KEYS = ("model", "module")  # tried in this order, as the authors' default model_key
STRIPPED_PREFIXES = ("backbone.", "encoder.")
# Pre-training only (modeling_pretrain.py): the MAE decoder and its input projection, the mask
# token, and the encoder's final LayerNorm (the fine-tuning model uses fc_norm after pooling).
PRETRAINING_ONLY_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token", "norm.")


class CheckpointMismatch(ValueError):
    """The checkpoint does not fit the configured model; the message lists every difference."""


@dataclass(frozen=True)
class RemappedState:
    """A checkpoint's state in ``LGIFormer``'s key layout, and what was changed to get there."""

    state: dict[str, torch.Tensor]
    container_key: str | None  # "model" / "module", or None when the file is the state itself
    stripped_prefixes: tuple[str, ...]  # prefixes that were found and removed
    ignored_keys: tuple[str, ...]  # pre-training-only keys, dropped
    pos_embed_grid: tuple[int, int, int] | None  # the checkpoint's pos_embed grid, if it had one


def read_checkpoint(path: str | Path) -> tuple[Mapping[str, torch.Tensor], str | None]:
    """(state dict, container key) of a ``.pth`` file (optimizer state and args are read too, then dropped)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatch(f"{path}: expected a dict, got {type(checkpoint).__name__}")
    for key in CONTAINER_KEYS:
        if key in checkpoint:
            return checkpoint[key], key
    return checkpoint, None


def interpolate_pos_embed(
    pos_embed: torch.Tensor, config: LGIFormerConfig
) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(pos_embed resized to ``config``'s token grid, the checkpoint's grid).

    As the authors: the number of temporal positions must be the model's; each frame's square
    spatial grid is resized bicubically (align_corners=False).
    """
    frames, height, width = config.token_grid
    count, dim = pos_embed.shape[-2], pos_embed.shape[-1]
    side = math.isqrt(count // frames) if count % frames == 0 else 0
    if side * side * frames != count or dim != config.embed_dim:
        raise CheckpointMismatch(
            f"pos_embed {tuple(pos_embed.shape)} is not {frames} frames of a square grid"
            f" of {config.embed_dim}-d positions"
        )
    if (side, side) == (height, width):
        return pos_embed.reshape(1, count, dim), (frames, side, side)
    grid = pos_embed.reshape(frames, side, side, dim).permute(0, 3, 1, 2).float()
    resized = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
    tokens = resized.permute(0, 2, 3, 1).reshape(1, frames * height * width, dim).to(pos_embed.dtype)
    return tokens, (frames, side, side)


def remap_state_dict(
    raw: Mapping[str, torch.Tensor], config: LGIFormerConfig, container_key: str | None = None
) -> RemappedState:
    """The authors' key clean-up, applied to a state dict (no model needed)."""
    state: dict[str, torch.Tensor] = {}
    stripped: set[str] = set()
    ignored: list[str] = []
    for key, value in raw.items():
        name = key
        for prefix in STRIPPED_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                stripped.add(prefix)
                break
        if name.startswith(PRETRAINING_ONLY_PREFIXES):
            ignored.append(key)
        elif name in state:
            raise CheckpointMismatch(f"two checkpoint keys map to {name!r} after stripping prefixes")
        else:
            state[name] = value
    grid = None
    if "pos_embed" in state:
        state["pos_embed"], grid = interpolate_pos_embed(state["pos_embed"], config)
    return RemappedState(state, container_key, tuple(sorted(stripped)), tuple(ignored), grid)


def check_state_matches(model: LGIFormer, state: Mapping[str, torch.Tensor]) -> None:
    """Raise ``CheckpointMismatch`` listing missing, unexpected and wrongly shaped keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != expected[k]
    ]
    if missing or unexpected or wrong_shape:
        lines = [f"checkpoint does not fit LGIFormer({model.config})"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if items:
                lines.append(f"{title} ({len(items)}): " + ", ".join(items))
        raise CheckpointMismatch("\n".join(lines))


def _local_file(path: str | Path) -> Path:
    """A checkpoint on this machine (an s3:// key goes through pipeline.storage.model_store first)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (s3:// keys: resolve with pipeline.storage.model_store first)")
    return path


def load_checkpoint(path: str | Path, config: LGIFormerConfig = PAPER_CONFIG) -> LGIFormer:
    """``LGIFormer`` in eval mode with every weight from the checkpoint file.

    A checkpoint that carries ``pos_embed`` was trained with learned positions, so the model
    gets them (resized if needed) instead of the fixed sine-cosine table.
    """
    raw, container = read_checkpoint(_local_file(path))
    remapped = remap_state_dict(raw, config, container)
    if remapped.pos_embed_grid is not None:
        config = dataclasses.replace(config, learnable_pos_embed=True)
    model = LGIFormer(config)
    check_state_matches(model, remapped.state)
    model.load_state_dict(remapped.state, strict=True)
    return model.eval()


@dataclass(frozen=True)
class ExportedModel:
    onnx_path: Path
    checkpoint_sha256: str
    max_abs_diff: float  # torch vs ONNX Runtime (CPU) logits on random clips


def export_checkpoint_onnx(
    path: str | Path,
    out: str | Path,
    config: LGIFormerConfig = PAPER_CONFIG,
    *,
    classes: tuple[str, ...] = DFEW_CLASSES,
    check_clips: int = 2,
    tolerance: float = 1e-4,
) -> ExportedModel:
    """Checkpoint -> ONNX (dynamic batch, ``clips`` -> ``logits``), then checked against torch
    on ``check_clips`` random clips; fails if any logit differs by more than ``tolerance``."""
    local = _local_file(path)
    digest = file_sha256(local)
    model = load_checkpoint(str(local), config)
    metadata = {"checkpoint": str(path), "checkpoint_sha256": digest, "torch": torch.__version__}
    onnx_path = export_onnx(model, out, classes=classes, metadata=metadata)
    c = model.config
    clips = torch.randn(
        check_clips, 3, c.num_frames, c.image_size, c.image_size, generator=torch.Generator().manual_seed(0)
    )
    diff = max_abs_diff_vs_onnx(model, onnx_path, clips)
    if diff > tolerance:
        raise RuntimeError(f"ONNX export of {path} differs from torch by {diff:.3g} (> {tolerance:g})")
    return ExportedModel(onnx_path, digest, diff)
