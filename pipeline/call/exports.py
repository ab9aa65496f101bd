"""Write one call's result to a local directory (the `callaffect analyze --out DIR` layout).

Files are 0640: transcripts and scores are personal data, readable by the owner and the group
that the directory grants, never by everyone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.call.analyze import CallResult

PARQUET_COMPRESSION = "zstd"
FILE_MODE = 0o640


def write_table(table, path: str | Path) -> None:
    """Write Parquet to a temporary name, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
    tmp.chmod(FILE_MODE)
    os.replace(tmp, path)


def write_local(result: CallResult, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if result.ok:
        _write_text(out / "diarization.rttm", result.rttm)
        _write_text(out / "transcript.vtt", result.vtt)
        for name, table in result.tables.items():
            write_table(table, out / "tables" / f"{name}.parquet")
            result.manifest.table_keys[name] = f"tables/{name}.parquet"
    manifest_path = out / "manifest.json"
    _write_text(manifest_path, result.manifest.to_json())  # written last: it commits the call
    return manifest_path


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary name created 0640, then rename: never a half or open file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.chmod(FILE_MODE)  # an existing temporary keeps its old mode through os.open
    os.replace(tmp, path)
