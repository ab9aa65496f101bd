"""LGI-Former: the video transformer of MAE-DFER (Sun et al., ACM MM 2023), fine-tuning form.

Rebuilt from the authors' ``modeling_finetune.py`` (github.com/sunlicai/MAE-DFER, MIT licence:
``VisionTransformer`` with ``attn_type='local_global'`` and ``LGBlock``), in the configuration
of their DFEW fine-tuning script (``vit_base_dim512_no_depth_patch16_160 --depth 16
--lg_region_size 2 5 10 --lg_classify_token_type region``). Parameter names and shapes equal
the authors', so their fine-tuned ``state_dict`` loads as is (84,878,343 parameters, the
"number of params" printed in their ``logs/dfew.out``).

A clip (N, 3, 16, 160, 160) becomes 8x10x10 tubelet tokens (2 frames x 16x16 pixels), split
into 4x2x1 regions of 2x5x10 tokens, each with one learnable region token. Each block runs

1. local self-attention inside each region (its tokens and its region token),
2. global self-attention among the region tokens,
3. cross-attention from every local token to all region tokens,
4. an MLP on every token,

and the clip is classified from the mean of the region tokens (``pooling='region'``).

The forward pass is written for ``torch.onnx.export``: no Python branches on data, no in-place
writes into slices (the authors' code assigns ``x[:, 0] = ...``), and reshapes that only leave
the batch dimension free.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The authors' DFEW class order and input normalisation, with their sources, live in the
# runtime stage, which must not need torch; re-exported here for the export metadata.
from pipeline.networks.mae_dfer_contract import CLASSES as DFEW_CLASSES
from pipeline.networks.mae_dfer_contract import INPUT_MEAN, INPUT_STD

Pooling = Literal["region", "org", "all"]


@dataclass(frozen=True)
class LGIFormerConfig:
    """Architecture of an LGI-Former classifier; defaults are the paper's (DFEW) model."""

    num_frames: int = 16
    image_size: int = 160
    patch_size: int = 16
    tubelet_size: int = 2
    embed_dim: int = 512
    depth: int = 16
    num_heads: int = 8
    mlp_ratio: float = 4.0
    region_size: tuple[int, int, int] = (2, 5, 10)  # (t, h, w) in tokens: the authors' lg_region_size
    num_classes: int = 7
    pooling: Pooling = "region"  # the authors' lg_classify_token_type: region tokens, local ('org') or all
    learnable_pos_embed: bool = False  # the authors' use_learnable_pos_emb (False: fixed sine-cosine)
    layer_norm_eps: float = 1e-6

    def __post_init__(self):
        grid = (
            self.num_frames // self.tubelet_size,
            self.image_size // self.patch_size,
            self.image_size // self.patch_size,
        )
        if self.num_frames % self.tubelet_size or self.image_size % self.patch_size:
            raise ValueError(f"frames/size must be multiples of tubelet/patch: {self}")
        if any(g % r for g, r in zip(grid, self.region_size, strict=True)):
            raise ValueError(f"token grid {grid} is not divisible by region size {self.region_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.pooling not in ("region", "org", "all"):
            raise ValueError(f"pooling must be region, org or all, got {self.pooling!r}")

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """Tokens along (time, height, width)."""
        side = self.image_size // self.patch_size
        return (self.num_frames // self.tubelet_size, side, side)

    @property
    def region_grid(self) -> tuple[int, int, int]:
        """Regions along (time, height, width)."""
        return tuple(g // r for g, r in zip(self.token_grid, self.region_size, strict=True))  # type: ignore[return-value]

    @property
    def num_tokens(self) -> int:
        return math.prod(self.token_grid)

    @property
    def num_regions(self) -> int:
        return math.prod(self.region_grid)

    @property
    def tokens_per_region(self) -> int:
        return math.prod(self.region_size)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


PAPER_CONFIG = LGIFormerConfig()  # the authors' DFEW model


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """(1, num_positions, dim) sine-cosine table as the authors build it (get_sinusoid_encoding_table)."""
    position = np.arange(num_positions, dtype=np.float64)[:, None]
    rate = np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None, :]
    table = position / rate
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float32).unsqueeze(0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GeneralAttention(nn.Module):
    """Multi-head attention of ``query`` over ``context`` (self-attention when they are the same).

    As the authors': bias-free q and kv projections plus separate ``q_bias``/``v_bias`` (the
    key bias is zero), scale head_dim ** -0.5.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = F.linear(query, self.q.weight, self.q_bias).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        kv_bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        kv = F.linear(context, self.kv.weight, kv_bias).unflatten(-1, (2, self.num_heads, -1))
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, context tokens, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).flatten(2))


class LGIBlock(nn.Module):
    """One LGI-Former block (the authors' LGBlock with first='self', third='cross', nothing shared)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.first_attn_norm0 = nn.LayerNorm(dim, eps=eps)
        self.first_attn = GeneralAttention(dim, num_heads)
        self.second_attn_norm0 = nn.LayerNorm(dim, eps=eps)
        self.second_attn = GeneralAttention(dim, num_heads)
        self.third_attn_norm0 = nn.LayerNorm(dim, eps=eps)
        self.third_attn_norm1 = nn.LayerNorm(dim, eps=eps)
        self.third_attn = GeneralAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, regions: torch.Tensor, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """regions (B, n, C) and local tokens (B, n, s, C) -> the same shapes."""
        num_regions, region_len = local.shape[1], local.shape[2]
        # 1. Local: each region token with its region's tokens, one sequence per (clip, region).
        x = torch.cat((regions.unsqueeze(2), local), dim=2).flatten(0, 1)
        h = self.first_attn_norm0(x)
        x = (x + self.first_attn(h, h)).unflatten(0, (-1, num_regions))
        regions, local = x[:, :, 0], x[:, :, 1:].flatten(1, 2)
        # 2. Global: region tokens of a clip attend to each other.
        h = self.second_attn_norm0(regions)
        regions = regions + self.second_attn(h, h)
        # 3. Local-global: every local token reads all (updated) region tokens of its clip.
        local = local + self.third_attn(self.third_attn_norm0(local), self.third_attn_norm1(regions))
        # 4. The MLP is per token, so region and local tokens can go through it apart.
        regions = regions + self.mlp(self.norm2(regions))
        local = local + self.mlp(self.norm2(local))
        return regions, local.unflatten(1, (num_regions, region_len))


class PatchEmbed(nn.Module):
    def __init__(self, config: LGIFormerConfig):
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(3, config.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, tokens, C), tokens in (t, h, w) order."""
        return self.proj(clips).flatten(2).transpose(1, 2)


class LGIFormer(nn.Module):
    """LGI-Former classifier: normalised clips (B, 3, T, H, W) -> class logits (B, classes)."""

    def __init__(self, config: LGIFormerConfig = PAPER_CONFIG):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        table = sinusoid_position_table(config.num_tokens, dim)
        if config.learnable_pos_embed:
            self.pos_embed = nn.Parameter(table)
        else:
            # Not in the state dict, as in the authors' model (a plain tensor attribute there).
            self.register_buffer("pos_embed", table, persistent=False)
        self.lg_region_tokens = nn.Parameter(torch.zeros(config.num_regions, dim))
        self.blocks = nn.ModuleList(
            LGIBlock(dim, config.num_heads, config.mlp_ratio, config.layer_norm_eps) for _ in range(config.depth)
        )
        self.fc_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The authors' initialisation (truncated normal 0.02); only matters for random-weight runs.
        nn.init.trunc_normal_(self.lg_region_tokens, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def partition(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T*H*W, C) in (t, h, w) order -> (B, regions, tokens per region, C).

        Regions are ordered (nt, nh, nw) and tokens inside a region (t, h, w), as the authors'
        ``rearrange('b (nt t nh h nw w) c -> b (nt nh nw) (t h w) c')``.
        """
        (nt, nh, nw), (t, h, w) = self.config.region_grid, self.config.region_size
        x = tokens.unflatten(1, (nt, t, nh, h, nw, w)).permute(0, 1, 3, 5, 2, 4, 6, 7)
        return x.flatten(4, 6).flatten(1, 3)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """Pooled, normalised clip features (B, C): the input of the classification head."""
        tokens = self.patch_embed(clips) + self.pos_embed
        local = self.partition(tokens)
        regions = self.lg_region_tokens.unsqueeze(0).expand(local.shape[0], -1, -1)
        for block in self.blocks:
            regions, local = block(regions, local)
        if self.config.pooling == "region":
            pooled = regions.mean(1)
        elif self.config.pooling == "org":
            pooled = local.mean((1, 2))
        else:
            pooled = (regions.sum(1) + local.sum((1, 2))) / (
                self.config.num_regions * (self.config.tokens_per_region + 1)
            )
        return self.fc_norm(pooled)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(clips))


def multiply_accumulates(config: LGIFormerConfig) -> int:
    """Multiply-accumulates of one clip's forward pass (matmuls and the patch convolution).

    Norms, softmax, GELU and additions are left out (under 1% here). Twice this is the FLOP
    count used for achieved TFLOP/s.
    """
    dim, n, s = config.embed_dim, config.num_regions, config.tokens_per_region
    hidden = int(dim * config.mlp_ratio)
    local_tokens, all_tokens = n * s, n * (s + 1)
    first = all_tokens * dim * 4 * dim + 2 * n * (s + 1) ** 2 * dim  # q, kv, proj + QK^T and AV per region
    second = n * dim * 4 * dim + 2 * n * n * dim
    third = local_tokens * dim * 2 * dim + n * dim * 2 * dim + 2 * local_tokens * n * dim  # q, proj; kv on regions
    mlp = all_tokens * 2 * dim * hidden
    patch = config.num_tokens * 3 * config.tubelet_size * config.patch_size**2 * dim
    return config.depth * (first + second + third + mlp) + patch + dim * config.num_classes


def export_onnx(
    model: LGIFormer,
    path: str | Path,
    *,
    classes: Sequence[str] = DFEW_CLASSES,
    metadata: dict[str, str] | None = None,
    opset: int = 18,
) -> Path:
    """Write ``model`` as ONNX: input ``clips`` float32 (N, 3, T, H, W) normalised, output
    ``logits`` (N, classes), batch dimension dynamic. The config, class names and input
    normalisation go into the model's metadata_props, with ``metadata`` (e.g. the checkpoint's
    digest), so the runtime needs nothing else."""
    import onnx

    config = model.config
    if len(classes) != config.num_classes:
        raise ValueError(f"{len(classes)} class names for a {config.num_classes}-class model")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # Example batch of 2: torch.export specialises a dimension seen as 1.
    example = torch.zeros(2, 3, config.num_frames, config.image_size, config.image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["clips"],
            output_names=["logits"],
            dynamic_shapes={"clips": {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    props = {
        "lgi_former_config": config.to_json(),
        "classes": json.dumps(list(classes)),
        "input_mean": json.dumps(INPUT_MEAN),
        "input_std": json.dumps(INPUT_STD),
        **(metadata or {}),
    }
    onnx.helper.set_model_props(proto, props)
    onnx.save_model(proto, str(path))
    return path


def max_abs_diff_vs_onnx(model: LGIFormer, onnx_path: str | Path, clips: torch.Tensor) -> float:
    """Largest |torch - ONNX Runtime (CPU)| over the logits of ``clips`` (normalised, N x 3 x T x H x W)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model.eval()(clips).numpy()
    (actual,) = session.run(["logits"], {"clips": clips.numpy()})
    return float(np.abs(actual - expected).max())
