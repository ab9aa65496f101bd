"""Speed of the heavy clip model (MAE-DFER, the paper's full-size LGI-Former): JSON on stdout.

RANDOM WEIGHTS (no weights can be downloaded here): speed and FLOPs do not depend on the
values, but nothing here says anything about accuracy. Reports the parameter count, FLOPs
per clip (analytic, 2 x multiply-accumulates; equal to torch's FlopCounterMode), torch vs
ONNX Runtime max |logit difference|, CPU clips/s through ONNX Runtime (batch 1 and 4) and
torch, and, when CUDA is available, clips/s and achieved TFLOP/s at batch 1-64 for torch fp32,
torch fp16 autocast and ONNX Runtime's CUDA provider (fp32).

    .venv/bin/python bench/bench_mae_dfer.py [--threads 2] [--onnx existing.onnx] [--out result.json]

Exporting the full model takes about a minute and 2 GB of memory; --onnx reuses an export.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.networks.lgi_former import (
    PAPER_CONFIG,
    LGIFormer,
    LGIFormerConfig,
    export_onnx,
    max_abs_diff_vs_onnx,
    multiply_accumulates,
)

warnings.filterwarnings("ignore")
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)


def _clips_per_second(
    run: Callable[[], None], batch: int, *, min_reps: int, min_seconds: float, sync: Callable[[], None] = lambda: None
) -> float:
    """Clips per second of ``run`` (one batch), after one warm-up call."""
    run()
    sync()
    reps, started = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - started < min_seconds:
        run()
        reps += 1
    sync()
    return batch * reps / (time.perf_counter() - started)


def _random_model(config: LGIFormerConfig) -> LGIFormer:
    # Realistic-scale random weights (as the tests' checkpoint builder), so the parity check has teeth.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "builder", Path(__file__).resolve().parents[1] / "models" / "build_test_mae_dfer_checkpoint.py"
    )
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    model = LGIFormer(config)
    model.load_state_dict(builder.random_state(config))
    return model.eval()


def _ort_session(onnx_path: Path, providers: list[str], threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), options, providers=providers)


def bench_cpu(model: LGIFormer, onnx_path: Path, threads: int) -> dict:
    config = model.config
    session = _ort_session(onnx_path, ["CPUExecutionProvider"], threads)
    torch.set_num_threads(threads)
    result = {}
    for batch in (1, 4):
        clips = torch.randn(batch, 3, config.num_frames, config.image_size, config.image_size)
        feed = {"clips": clips.numpy()}
        result[f"onnxruntime_batch{batch}"] = _clips_per_second(
            lambda: session.run(["logits"], feed), batch, min_reps=2, min_seconds=0
        )
    clips = torch.randn(1, 3, config.num_frames, config.image_size, config.image_size)
    with torch.inference_mode():
        result["torch_batch1"] = _clips_per_second(lambda: model(clips), 1, min_reps=2, min_seconds=0)
    return {k: round(v, 3) for k, v in result.items()}


def bench_gpu(model: LGIFormer, onnx_path: Path, flops_per_clip: float) -> dict:
    config = model.config
    device = torch.device("cuda")
    model = model.to(device)
    sync = torch.cuda.synchronize
    rows = []
    for batch in GPU_BATCHES:
        clips = torch.randn(batch, 3, config.num_frames, config.image_size, config.image_size, device=device)
        with torch.inference_mode():
            fp32 = _clips_per_second(lambda: model(clips), batch, min_reps=3, min_seconds=1.0, sync=sync)
            with torch.autocast("cuda", dtype=torch.float16):
                fp16 = _clips_per_second(lambda: model(clips), batch, min_reps=3, min_seconds=1.0, sync=sync)
        rows.append({"batch": batch, "torch_fp32": fp32, "torch_fp16_autocast": fp16})
    torch.cuda.empty_cache()
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        session = _ort_session(onnx_path, ["CUDAExecutionProvider", "CPUExecutionProvider"], 0)
        for row in rows:
            feed = {
                "clips": np.random.default_rng(0).standard_normal(
                    (row["batch"], 3, config.num_frames, config.image_size, config.image_size), np.float32
                )
            }
            row["onnxruntime_cuda_fp32"] = _clips_per_second(
                lambda: session.run(["logits"], feed), row["batch"], min_reps=3, min_seconds=1.0
            )
    out = []
    for row in rows:
        entry = {"batch": row["batch"]}
        for key, rate in row.items():
            if key != "batch":
                entry[f"{key}_clips_per_s"] = round(rate, 1)
                entry[f"{key}_tflops"] = round(rate * flops_per_clip / 1e12, 2)
        out.append(entry)
    return {"device": torch.cuda.get_device_name(), "onnxruntime_providers": ort.get_available_providers(), "rows": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--onnx", default=None, help="reuse this export of the full-size random model")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    config = PAPER_CONFIG
    model = _random_model(config)
    macs = multiply_accumulates(config)
    report = {
        "model": "MAE-DFER LGI-Former (paper's DFEW model: 16x160x160, dim 512, depth 16, regions 2x5x10)",
        "weights": "random (speed only; says nothing about accuracy)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "gmacs_per_clip": round(macs / 1e9, 2),
        "gflops_per_clip": round(2 * macs / 1e9, 2),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_1min": round(os.getloadavg()[0], 2),
            "torch": torch.__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
            "threads": args.threads,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(args.onnx) if args.onnx else Path(tmp) / "mae-dfer-random.onnx"
        if not args.onnx:
            started = time.perf_counter()
            export_onnx(model, onnx_path, metadata={"checkpoint_sha256": "random-weights"})
            report["onnx_export_s"] = round(time.perf_counter() - started, 1)
        clips = torch.randn(
            2, 3, config.num_frames, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0)
        )
        report["torch_vs_onnxruntime_cpu_max_abs_diff"] = max_abs_diff_vs_onnx(model, onnx_path, clips)
        report["cpu_clips_per_s"] = bench_cpu(model, onnx_path, args.threads)
        report["cpu_clips_per_s"]["note"] = "shared machine: see machine.loadavg_1min"
        report["gpu"] = (
            bench_gpu(model, onnx_path, 2 * macs) if torch.cuda.is_available() else "no CUDA device in this run"
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
