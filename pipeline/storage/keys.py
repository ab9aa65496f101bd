"""Where raw recordings and ops records live in the buckets. One place, so the batch, the leases
and retention agree (the curated tables and manifests: pipeline.storage.curated).

raw bucket:      <raw_prefix><YYYY-MM-DD>/<call_id>.<ext>   (+ optional <call_id>.json metadata)
curated bucket:  <ops_prefix>leases/date=<d>/call_id=<id>.json       who is analysing the call now
                 <ops_prefix>failures/date=<d>/call_id=<id>.json     runs that failed to commit it
                 <ops_prefix>landing/date=<d>/call_id=<id>.json      the call's recording was announced (pipeline.jobs.landing)
                 <ops_prefix>ignored/<sha1 of the raw key>.json       raw objects that are not recordings
                 <ops_prefix>retention/date=<d>/deletions-<time>.jsonl  what retention deleted
                 <ops_prefix>erasure/requests/<request_id>.json      erasure requests waiting (pipeline.jobs.erasure)
                 <ops_prefix>erasure/done/<request_id>.json          erasure records (digests, never ids)
                 <ops_prefix>erasure/rejected/<sha256 of the request key>.json   rejected requests, with the reason
                 <ops_prefix>erasure/awaiting-marts/<request_id>     erased, marts not rebuilt yet
                 <ops_prefix>erasure/tombstones/<sha256 of the media>.json      erased content: never analysed again
                 <ops_prefix>erasure/reuploads/<request_id>/<time>-<id>.json    a copy of erased content deleted by the batch
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from datetime import date, datetime

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


@dataclass(frozen=True)
class NotARecording:
    """A raw object that is not analysed: a metadata sidecar, or ignored with a reason."""

    key: str
    kind: str  # "sidecar" or "ignored"
    reason: str


def classify_raw_key(key: str, raw_prefix: str, size: int = 0, etag: str = "") -> RawRecording | NotARecording:
    """A raw object's key -> the recording it is, or why it is not one.

    Any object at ``<prefix><date>/<name>`` that is not metadata JSON counts as a recording,
    whatever its extension: a mislabelled or non-media file must reach analysis and be
    quarantined with a reason. Everything else is ignored with a reason that names the rule.
    """
    if not key.startswith(raw_prefix):
        return NotARecording(key, "ignored", f"outside the raw prefix {raw_prefix!r}")
    if key.endswith("/"):
        return NotARecording(key, "ignored", "a folder marker, not a recording")
    parts = key[len(raw_prefix):].split("/")
    if any(p in ("", ".", "..") for p in parts):
        return NotARecording(key, "ignored", "empty, '.' or '..' path segment")
    if len(parts) != 2:
        return NotARecording(key, "ignored", f"not at {raw_prefix}<YYYY-MM-DD>/<call_id>.<ext> ({len(parts) - 1} folder levels)")
    day, name = parts
    if not _valid_date(day):
        return NotARecording(key, "ignored", "folder is not a date (YYYY-MM-DD)")
    if name.startswith("."):
        return NotARecording(key, "ignored", "hidden file")
    if name.endswith(".json"):
        return NotARecording(key, "sidecar", "call metadata")
    call_id = name.rsplit(".", 1)[0] if "." in name else name
    if not valid_call_id(call_id):
        return NotARecording(
            key, "ignored",
            "file name is not a valid call id (letters, digits, '_', '.', '-'; starts with a letter or digit; at most 128)",
        )
    return RawRecording(key=key, call_id=call_id, call_date=day, size=size, etag=etag.strip('"'))


def parse_raw_key(key: str, raw_prefix: str, size: int = 0, etag: str = "") -> RawRecording | None:
    """A raw media key -> RawRecording, or None for keys that are not recordings."""
    found = classify_raw_key(key, raw_prefix, size, etag)
    return found if isinstance(found, RawRecording) else None


def _valid_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def lease_key(ops_prefix: str, call_date: str, call_id: str) -> str:
    return f"{ops_prefix}leases/date={call_date}/call_id={call_id}.json"


def failures_key(ops_prefix: str, call_date: str, call_id: str) -> str:
    return f"{ops_prefix}failures/date={call_date}/call_id={call_id}.json"


def landing_key(ops_prefix: str, call_date: str, call_id: str) -> str:
    return f"{ops_prefix}landing/date={call_date}/call_id={call_id}.json"


def ignored_key(ops_prefix: str, raw_key: str) -> str:
    # Hashed: a raw key may hold any character, an ops key must stay plain.
    return f"{ops_prefix}ignored/{hashlib.sha1(raw_key.encode()).hexdigest()}.json"


def retention_log_key(ops_prefix: str, stamp: datetime) -> str:
    return f"{retention_log_folder(ops_prefix, stamp)}deletions-{stamp:%Y%m%dT%H%M%S%fZ}.jsonl"


def retention_log_folder(ops_prefix: str, day: date | datetime) -> str:
    """The folder of one day's retention logs, ending with "/"."""
    return f"{ops_prefix}retention/date={day:%Y-%m-%d}/"


# --- erasure (pipeline.jobs.erasure) ---------------------------------------------------------

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Request ids name keys: the call id's alphabet. Checked here too, so no caller can build a key
# from a hostile value.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")


def valid_request_id(request_id: str) -> bool:
    return isinstance(request_id, str) and bool(_REQUEST_ID.match(request_id))


def _request_id(request_id: str) -> str:
    if not valid_request_id(request_id):
        raise ValueError("request id: letters, digits, '_', '.', '-', starting with a letter or digit, at most 128")
    return request_id


def erasure_folder(ops_prefix: str) -> str:
    return f"{ops_prefix}erasure/"


def erasure_requests_folder(ops_prefix: str) -> str:
    return f"{erasure_folder(ops_prefix)}requests/"


def erasure_request_key(ops_prefix: str, request_id: str) -> str:
    return f"{erasure_requests_folder(ops_prefix)}{_request_id(request_id)}.json"


def erasure_record_key(ops_prefix: str, request_id: str) -> str:
    return f"{erasure_folder(ops_prefix)}done/{_request_id(request_id)}.json"


def erasure_rejected_key(ops_prefix: str, request_key: str) -> str:
    # Hashed: a rejected request's name may hold anything, even the id it asked to erase.
    return f"{erasure_folder(ops_prefix)}rejected/{hashlib.sha256(request_key.encode()).hexdigest()}.json"


def erasure_awaiting_marts_folder(ops_prefix: str) -> str:
    return f"{erasure_folder(ops_prefix)}awaiting-marts/"


def erasure_awaiting_marts_key(ops_prefix: str, request_id: str) -> str:
    return f"{erasure_awaiting_marts_folder(ops_prefix)}{_request_id(request_id)}"


def tombstone_key(ops_prefix: str, sha256: str) -> str:
    if not _SHA256.match(sha256 or ""):
        raise ValueError("a tombstone is named by a sha256 in lower-case hex")
    return f"{erasure_folder(ops_prefix)}tombstones/{sha256}.json"


def reupload_note_key(ops_prefix: str, request_id: str, stamp: datetime, note_id: str) -> str:
    return f"{erasure_folder(ops_prefix)}reuploads/{_request_id(request_id)}/{stamp:%Y%m%dT%H%M%S%fZ}-{note_id}.json"
