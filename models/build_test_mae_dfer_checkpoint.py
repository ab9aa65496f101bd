"""Build a random-weight MAE-DFER checkpoint in the authors' file layout. TESTS AND BENCHMARKS ONLY.

The weights are random: outputs say nothing about expressions and must never back a quality
claim. The file exists so that tests run the real loading, export and inference code with no
download and no weights in git.

Layout, as the authors' ``utils.save_model`` writes it (a dict with ``model``, ``optimizer``,
``epoch``, ``scaler`` and ``args`` as an ``argparse.Namespace``), with the extras of their
pre-training checkpoints that ``load_checkpoint`` must handle:

- every LGI-Former key under ``encoder.`` (``run_class_finetuning.py`` strips it);
- decoder keys (``decoder.*``, ``encoder_to_decoder.weight``, ``mask_token``) and the
  encoder's final ``norm``, all to be ignored;
- optionally an ``encoder.pos_embed`` on a different spatial grid, to be interpolated.

Weights are scaled so activations and logits are of order 1 (the authors' 0.02 initialisation
gives near-constant logits, which would make a torch/ONNX comparison too easy).

Usage: python models/build_test_mae_dfer_checkpoint.py --out ckpt.pth [--full] [--pos-embed-side N] [--seed N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pipeline.networks.lgi_former import PAPER_CONFIG, LGIFormer, LGIFormerConfig

# Small enough for a test (~0.2 M parameters), with several regions along time and height.
TEST_CONFIG = LGIFormerConfig(num_frames=4, image_size=64, embed_dim=64, depth=2, num_heads=4, region_size=(1, 2, 4))


def random_state(config: LGIFormerConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """LGI-Former state dict with random weights of realistic scale (keys as the authors')."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in LGIFormer(config).state_dict().items():
        noise = torch.randn(tensor.shape, generator=generator)
        module, leaf = name.rsplit(".", 1) if "." in name else ("", name)
        if "norm" in module.rsplit(".", 1)[-1] and leaf == "weight":  # LayerNorm gains
            state[name] = 1.0 + 0.1 * noise
        elif name == "lg_region_tokens":
            state[name] = noise
        elif tensor.dim() >= 2:  # linear and conv weights: unit-variance outputs for unit inputs
            state[name] = noise / tensor[0].numel() ** 0.5
        else:  # biases
            state[name] = 0.1 * noise
    return state


def pretraining_extras(config: LGIFormerConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A few keys of the authors' pre-training model that fine-tuning ignores (names as in their log)."""
    generator = torch.Generator().manual_seed(seed + 1)
    dim, decoder_dim = config.embed_dim, config.embed_dim // 2
    return {
        "mask_token": torch.randn(1, 1, decoder_dim, generator=generator),
        "encoder_to_decoder.weight": torch.randn(decoder_dim, dim, generator=generator),
        "decoder.blocks.0.norm1.weight": torch.ones(decoder_dim),
        "decoder.blocks.0.attn.qkv.weight": torch.randn(3 * decoder_dim, decoder_dim, generator=generator),
        "decoder.head.weight": torch.randn(3 * 2 * 16 * 16, decoder_dim, generator=generator),
        "encoder.norm.weight": torch.ones(dim),
        "encoder.norm.bias": torch.zeros(dim),
    }


def build_test_checkpoint(
    out: str | Path,
    config: LGIFormerConfig = TEST_CONFIG,
    *,
    seed: int = 0,
    pos_embed_side: int | None = None,
) -> Path:
    """Write the checkpoint to ``out``; ``pos_embed_side`` adds a learned pos_embed on a
    ``frames x side x side`` grid (side != the model's grid exercises interpolation)."""
    model_state = {f"encoder.{k}": v for k, v in random_state(config, seed).items()}
    if pos_embed_side is not None:
        frames = config.token_grid[0]
        generator = torch.Generator().manual_seed(seed + 2)
        model_state["encoder.pos_embed"] = torch.randn(
            1, frames * pos_embed_side**2, config.embed_dim, generator=generator
        )
    model_state.update(pretraining_extras(config, seed))
    args = argparse.Namespace(
        model="vit_base_dim512_no_depth_patch16_160",
        depth=config.depth,
        nb_classes=config.num_classes,
        num_frames=config.num_frames,
        input_size=config.image_size,
        attn_type="local_global",
        lg_region_size=list(config.region_size),
        lg_classify_token_type=config.pooling,
        note="random weights built by models/build_test_mae_dfer_checkpoint.py",
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model_state, "optimizer": {}, "epoch": 99, "scaler": {"scale": 65536.0}, "args": args}, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--full", action="store_true", help="the paper's full-size model (~340 MB) instead of the test size"
    )
    parser.add_argument("--pos-embed-side", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = PAPER_CONFIG if args.full else TEST_CONFIG
    path = build_test_checkpoint(args.out, config, seed=args.seed, pos_embed_side=args.pos_embed_side)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, random weights, {config})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
