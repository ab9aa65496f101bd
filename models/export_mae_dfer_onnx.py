"""Export an MAE-DFER checkpoint (the authors' fine-tuned ``.pth``) to ONNX for the clip stage.

    python models/export_mae_dfer_onnx.py --checkpoint PATH_OR_S3_URI --out data/models/mae-dfer-dfew.onnx

The checkpoint is loaded strictly (``pipeline/networks/mae_dfer_checkpoint.py``) into the
paper's LGI-Former (16 x 160 x 160 clips, DFEW's 7 classes), exported with a dynamic batch
(input ``clips`` float32 (N, 3, 16, 160, 160), normalised; output ``logits`` (N, 7)) and
checked against torch on random clips (max |difference| <= 1e-4, else it fails). The ONNX
metadata records the classes, the normalisation and the checkpoint's SHA-256, which the
runtime reports as its model version. s3:// checkpoints are read through the model store
with the usual settings (``--config`` or CALLAFFECT_CONFIG).

The weights are the authors' (github.com/sunlicai/MAE-DFER, published per DFEW fold); they
are never downloaded by this script.
"""

from __future__ import annotations

import argparse
import json
import time

from pipeline.networks.lgi_former import PAPER_CONFIG
from pipeline.networks.mae_dfer_checkpoint import export_checkpoint_onnx
from pipeline.storage.model_store import resolve_model_path
from pipeline.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="local .pth or s3:// key in the model store")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--config", default=None, help="settings TOML (for s3:// checkpoints)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    checkpoint = args.checkpoint
    if checkpoint.startswith("s3://"):
        checkpoint = resolve_model_path(checkpoint, load_settings(args.config))
    result = export_checkpoint_onnx(checkpoint, args.out, PAPER_CONFIG)
    print(
        json.dumps(
            {
                "onnx": str(result.onnx_path),
                "megabytes": round(result.onnx_path.stat().st_size / 1e6, 1),
                "checkpoint_sha256": result.checkpoint_sha256,
                "max_abs_diff_torch_vs_onnx": result.max_abs_diff,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
