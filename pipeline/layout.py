"""Where things live in the buckets. One place, so the batch, the marts and retention agree.

raw:      <raw_prefix><YYYY-MM-DD>/<call_id>.<ext>      (+ optional <call_id>.json metadata)
curated:  <curated_prefix><table>/date=<YYYY-MM-DD>/call_id=<call_id>/part-0.parquet
          <curated_prefix>_manifests/date=<YYYY-MM-DD>/call_id=<call_id>/_manifest.json
Partition keys are Hive style, so DuckDB's read_parquet(..., hive_partitioning=true) sees them.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

MEDIA_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".mp4", ".mkv", ".webm", ".mov", ".aac")
MANIFESTS = "_manifests"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True)
class RawRecording:
    key: str
    call_id: str
    call_date: str
    size: int = 0
    etag: str = ""

    @property
    def metadata_key(self) -> str:
        return posixpath.join(posixpath.dirname(self.key), f"{self.call_id}.json")


def valid_call_id(call_id: str) -> bool:
    return bool(_CALL_ID.match(call_id))


def parse_raw_key(key: str, raw_prefix: str, size: int = 0, etag: str = "") -> RawRecording | None:
    """A raw media key -> RawRecording, or None for keys that are not recordings (e.g. metadata).

    Any object under the prefix that is not metadata JSON counts as a recording, whatever its
    extension: a mislabelled or non-media file must reach analysis and be quarantined with a
    reason, not be silently ignored.
    """
    if not key.startswith(raw_prefix) or key.endswith("/"):
        return None
    rest = key[len(raw_prefix):]
    parts = rest.split("/")
    if len(parts) != 2 or not _DATE.match(parts[0]):
        return None
    name = parts[1]
    if name.endswith(".json") or name.startswith("."):
        return None
    call_id = name.rsplit(".", 1)[0] if "." in name else name
    if not valid_call_id(call_id):
        return None
    return RawRecording(key=key, call_id=call_id, call_date=parts[0], size=size, etag=etag.strip('"'))


def table_key(curated_prefix: str, table: str, call_date: str, call_id: str) -> str:
    return f"{curated_prefix}{table}/date={call_date}/call_id={call_id}/part-0.parquet"


def manifest_key(curated_prefix: str, call_date: str, call_id: str) -> str:
    return f"{curated_prefix}{MANIFESTS}/date={call_date}/call_id={call_id}/_manifest.json"


def parse_manifest_key(key: str, curated_prefix: str) -> tuple[str, str] | None:
    """manifest key -> (call_date, call_id)."""
    m = re.match(
        re.escape(curated_prefix) + MANIFESTS + r"/date=(\d{4}-\d{2}-\d{2})/call_id=([^/]+)/_manifest\.json$", key
    )
    return (m.group(1), m.group(2)) if m else None
