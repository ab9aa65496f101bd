"""Write one call's result to a local directory (the `callaffect analyze --out DIR` layout)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.analyze import CallResult

PARQUET_COMPRESSION = "zstd"


def write_table(table, path: str | Path) -> None:
    """Write Parquet to a temporary name, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
    os.replace(tmp, path)


def write_local(result: CallResult, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if result.ok:
        (out / "diarization.rttm").write_text(result.rttm)
        (out / "transcript.vtt").write_text(result.vtt)
        for name, table in result.tables.items():
            write_table(table, out / "tables" / f"{name}.parquet")
            result.manifest.table_keys[name] = f"tables/{name}.parquet"
    manifest_path = out / "manifest.json"
    tmp = manifest_path.with_name(".manifest.json.tmp")
    tmp.write_text(result.manifest.to_json())
    os.replace(tmp, manifest_path)  # the manifest is written last: it commits the call
    return manifest_path
