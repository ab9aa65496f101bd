"""Erasure on request (GDPR Art. 17): remove one call, or every call of a subject, everywhere
the pipeline put it, within the month the law allows.

A request names a call id or a ``subject_id`` (the pseudonymous customer id of the call metadata,
copied into the manifest). A subject's calls are found by their manifests and by the metadata
sidecars of raw recordings, every version of them, so calls not processed yet are found too.
For each call, every version (and delete marker) of these is deleted for good:

- raw bucket: each object named after the call (media, its metadata sidecar, extra media files);
- curated root: the call's partition of every top-level folder (each table, ``snippets/``,
  ``_manifests/``: one file per call and table, so no other call is touched), its review
  records (verdicts, notes, assignments) and every review view event that names it;
- ops prefix: every object whose key or body names the call (leases, failure counts, ignored
  markers); a log of many calls (``*.jsonl``, e.g. the retention log) is rewritten without the
  call's lines and its older versions are deleted;
- trend reports (``reports/<day>/``) whose window holds one of the call's dates: they quote words
  of flagged segments. ``finish_pending`` rebuilds them once the marts are rebuilt.

The DuckDB marts are rebuilt as a new file (DuckDB does not reclaim deleted rows in place) by
``finish_pending``, which is handed the marts and trend report builders by the entry points
(a job never imports another job); it checks the new file holds none of the erased calls and
removes a stale WAL or half build beside it.

Before anything is deleted, a tombstone per erased recording (its sha256: from every version of
the raw media, and the manifest's) is written, so a copy uploaded again is never analysed: the
batch deletes such a copy with its sidecar (every version) and notes it beside the erasure record.

Tombstones, erasure records and logs never hold a call or subject id: records name them by
HMAC-SHA256 under a key of this deployment (``erasure.digest_key_path``), and hold counts and
keys with the ids replaced by their digests, never content. Request ids and ``requested_by``
may not contain the ids they erase. Idempotent: a second run of a request finds nothing, removes
nothing and leaves the record as it was.

Calls being analysed are taken under their lease first: a request that meets a busy call waits
for the next run (``ErasureBusy``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import posixpath
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator, model_validator

from pipeline.clock import utc_now
from pipeline.metadata import CallId, RoutingId
from pipeline.settings import Settings
from pipeline.storage import leases, object_store
from pipeline.storage.curated import MANIFESTS, CuratedStore, call_folder, parse_manifest_key
from pipeline.storage.keys import (
    RawRecording,
    erasure_awaiting_marts_folder,
    erasure_awaiting_marts_key,
    erasure_folder,
    erasure_record_key,
    erasure_rejected_key,
    erasure_requests_folder,
    tombstone_key,
    valid_call_id,
    valid_request_id,
)
from pipeline.storage.object_store import ObjectVersion
from pipeline.storage.reviews import REVIEWS, VIEWS_FOLDER, call_review_folders

log = logging.getLogger(__name__)

DEADLINE_DAYS = 30  # Art. 12(3): "without undue delay and in any event within one month"
MAX_REQUEST_BYTES = 64 * 1024
MAX_SIDECAR_BYTES = 64 * 1024  # pipeline.metadata.MAX_BYTES: a larger sidecar is not metadata
REPORTS = "reports"  # pipeline.jobs.trend_report writes reports/<day>/index.html under the curated root
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PARTITION = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/call_id=([^/]+)/")

RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")]
# Free text naming the operator or ticket; no control characters (it is written to records).
RequestedBy = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class RequestError(ValueError):
    """The request breaks the contract; the message names the field, never its value."""


class ErasureBusy(RuntimeError):
    """A call of the request is being analysed right now: the request waits for the next run."""


class ErasureError(RuntimeError):
    """The erasure could not be confirmed (e.g. the rebuilt marts still hold an erased call)."""


class ErasureRequest(BaseModel):
    """One erasure request: exactly one of ``call_id`` and ``subject_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    request_id: RequestId
    call_id: CallId | None = None
    subject_id: RoutingId | None = None
    requested_by: RequestedBy
    requested_at: str | None = None  # ISO 8601 with its offset; default: when the request arrived

    @field_validator("requested_at")
    @classmethod
    def _aware_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                stamp = datetime.fromisoformat(value)
            except ValueError:
                stamp = None
            if stamp is None or stamp.tzinfo is None:
                raise ValueError("expected an ISO 8601 time with its UTC offset")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> "ErasureRequest":
        if (self.call_id is None) == (self.subject_id is None):
            raise ValueError("give exactly one of call_id and subject_id")
        target = self.target
        # Request ids name keys and records, requested_by is kept: neither may carry the id.
        if target in self.request_id:
            raise ValueError("request_id must not contain the id to erase")
        if target in self.requested_by:
            raise ValueError("requested_by must not contain the id to erase")
        return self

    @property
    def target(self) -> str:
        return self.call_id if self.call_id is not None else self.subject_id

    @property
    def kind(self) -> str:
        return "call" if self.call_id is not None else "subject"


def _describe(exc: ValidationError) -> str:
    """pydantic's first error as ``field: message``; values are never echoed."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"unknown field {where!r}"[:200]
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"


def validate_request(data: object) -> ErasureRequest:
    """A parsed request (dict) -> ErasureRequest, or RequestError."""
    if not isinstance(data, dict):
        raise RequestError(f"a request is a JSON object, not {type(data).__name__}")
    try:
        return ErasureRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError(_describe(exc)) from None


def parse_request(blob: bytes) -> ErasureRequest:
    """The bytes of a request object -> ErasureRequest, or RequestError with a one-line reason."""
    if len(blob) > MAX_REQUEST_BYTES:
        raise RequestError(f"request is {len(blob)} bytes, over the {MAX_REQUEST_BYTES}-byte limit")
    try:
        data = json.loads(blob.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8 text") from None
    except RecursionError:
        raise RequestError("request is nested too deep") from None
    except ValueError:
        raise RequestError("request is not valid JSON") from None
    return validate_request(data)


# --- digests: ids as records may name them ------------------------------------------------------


class Digester:
    """HMAC-SHA256 of ids under the deployment's erasure key: a record can say "this call" to
    whoever holds the key and the id, and to nobody else (call ids are guessable; a plain hash
    of one is not a secret)."""

    def __init__(self, key: bytes):
        self._key = key
        self.key_id = self._mac("key-id")[:16]  # names the key in records, so a wrong key is caught

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def call(self, call_id: str) -> str:
        return self._mac(f"call:{call_id}")

    def subject(self, subject_id: str) -> str:
        return self._mac(f"subject:{subject_id}")


def _key_file(path: str) -> bytes:
    """The erasure key, from its file; a new random key (0600) when there is none yet."""
    file = Path(path).expanduser()
    if not file.is_file():
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made meanwhile by another process: read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    key = file.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"setting erasure.digest_key_path: {file} holds no key (at least 32 characters)")
    return key.encode()


def digester(settings: Settings) -> Digester:
    return Digester(_key_file(settings.erasure.digest_key_path))


def call_digest(settings: Settings, call_id: str) -> str:
    """How erasure records name ``call_id`` (to find a call's record, given its id)."""
    return digester(settings).call(call_id)


# --- what names a call ------------------------------------------------------------------------


def _token(value: str, extra: str = "") -> re.Pattern:
    """``value`` as a whole id in text: not glued to more id characters on either side (a "."
    after it may start an extension, so it still counts: erring towards erasing)."""
    chars = "A-Za-z0-9_\\-" + re.escape(extra)
    return re.compile(f"(?<![{chars}.]){re.escape(value)}(?![{chars}])")


class _Names:
    """Finds the erased ids in keys and bodies."""

    def __init__(self, call_ids: Iterable[str], subject_id: str | None = None):
        self.call_ids = set(call_ids)
        self._patterns = [_token(c) for c in sorted(self.call_ids)]
        if subject_id:
            self._patterns.append(_token(subject_id, "@"))

    def in_text(self, text: str) -> bool:
        return any(p.search(text) for p in self._patterns)

    def in_bytes(self, blob: bytes) -> bool:
        return self.in_text(blob.decode("utf-8", "replace"))


def _stem(key: str) -> str:
    name = posixpath.basename(key)
    return name.rsplit(".", 1)[0] if "." in name else name


# --- the plan: what goes -----------------------------------------------------------------------


@dataclass
class _Rewrite:
    """A log of many calls, to be written again without the erased calls' lines."""

    key: str
    data: bytes | None  # None: nothing is left, the object goes
    lines_removed: int
    versions: list[ObjectVersion]  # the versions that name an erased call: deleted after the rewrite


@dataclass
class _Plan:
    calls: dict[str, set[str]] = field(default_factory=dict)  # call id -> its dates
    raw: list[tuple[ObjectVersion, str]] = field(default_factory=list)  # (version, kind)
    curated: list[tuple[ObjectVersion, str]] = field(default_factory=list)  # keys of the curated bucket
    rewrites: list[_Rewrite] = field(default_factory=list)
    report_days: set[str] = field(default_factory=set)
    sha256: set[str] = field(default_factory=set)  # of the manifests; raw media is hashed when erased


@dataclass
class ErasureResult:
    """What one request removed (or, in a dry run, would remove). Ids only as digests."""

    request_id: str
    dry_run: bool
    target: str  # what the request named: "call" or "subject"
    target_digest: str  # ... as its digest
    calls: list[str]  # digests of the calls found
    removed: dict[str, int]  # kind -> objects (keys) removed
    versions_deleted: int
    log_lines_removed: int
    tombstones: int
    report_days: list[str]  # trend reports deleted, to be rebuilt from the new marts
    keys: list[str]  # "<bucket kind>:<key>", ids replaced by digests
    record_key: str | None = None
    already_done: bool = False  # the request had a record before this run

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _versions(client, bucket: str, prefix: str) -> list[ObjectVersion]:
    return list(object_store.list_versions(client, bucket, prefix))


def _folders(client, bucket: str, prefix: str) -> list[str]:
    """The "folders" right under ``prefix`` (each ending with "/"), also those that hold only
    older versions."""
    paginator = client.get_paginator("list_object_versions")
    found = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return found


def _read_version(client, bucket: str, v: ObjectVersion) -> bytes:
    return object_store.get_version_bytes(client, bucket, v.key, v.version_id)


def _find_calls(settings: Settings, client, request: ErasureRequest, raw_versions: list[ObjectVersion],
                manifests: list, sidecars: list[ObjectVersion]) -> dict[str, set[str]]:
    """call id -> dates, of every call the request covers, from manifests and raw objects.
    ``sidecars`` gets every raw version that names the subject (erased whatever its name)."""
    s3 = settings.s3
    calls: dict[str, set[str]] = defaultdict(set)
    if request.call_id is not None:
        calls[request.call_id]
    else:
        for _, manifest in manifests:
            if manifest.subject_id == request.subject_id:
                calls[manifest.call_id]
        # Every version of every sidecar: a call not processed yet, or whose manifest predates
        # subject ids, is found by its metadata (also a version that retention deleted).
        for v in raw_versions:
            if v.is_delete_marker or not v.key.endswith(".json") or v.size > MAX_SIDECAR_BYTES:
                continue
            try:
                data = json.loads(_read_version(client, s3.raw_bucket, v).decode("utf-8-sig"))
            except (ValueError, RecursionError):
                continue  # not metadata; it cannot name a subject
            if isinstance(data, dict) and data.get("subject_id") == request.subject_id:
                sidecars.append(v)
                if valid_call_id(_stem(v.key)):
                    calls[_stem(v.key)]
    for _, manifest in manifests:
        if manifest.call_id in calls and manifest.call_date:
            calls[manifest.call_id].add(manifest.call_date)
    # Manifests of every version (a call whose current manifest is gone still has its history).
    root_prefix = s3.curated_prefix
    for v in _versions(client, s3.curated_bucket, f"{root_prefix}{MANIFESTS}/"):
        found = parse_manifest_key(v.key, root_prefix)
        if found and found[1] in calls:
            calls[found[1]].add(found[0])
    for v in raw_versions:
        parts = v.key[len(s3.raw_prefix):].split("/") if v.key.startswith(s3.raw_prefix) else []
        if _stem(v.key) in calls and len(parts) == 2 and _DATE.match(parts[0]):
            calls[_stem(v.key)].add(parts[0])
    return dict(calls)


@dataclass
class _Found:
    """The request's calls, and what was read to find them."""

    calls: dict[str, set[str]]
    raw_versions: list[ObjectVersion]
    manifests: list
    sidecars: list[ObjectVersion]  # raw versions that name the subject


def _find(settings: Settings, client, request: ErasureRequest) -> _Found:
    raw_versions = _versions(client, settings.s3.raw_bucket, "")
    manifests = CuratedStore(settings, client=client).manifests()
    sidecars: list[ObjectVersion] = []
    calls = _find_calls(settings, client, request, raw_versions, manifests, sidecars)
    return _Found(calls, raw_versions, manifests, sidecars)


def _plan(settings: Settings, client, request: ErasureRequest, found: _Found, report_window_days: int | None,
          own_leases: set[str]) -> _Plan:
    s3 = settings.s3
    plan = _Plan(calls=found.calls)
    names = _Names(plan.calls, request.subject_id)
    plan.sha256 = {m.sha256 for _, m in found.manifests if m.call_id in plan.calls and m.sha256}

    # Raw: every object named after the call, wherever it lies (also ignored extra media), and
    # every sidecar naming the subject.
    sidecars = {(v.key, v.version_id) for v in found.sidecars}
    for v in found.raw_versions:
        if _stem(v.key) in plan.calls or posixpath.basename(v.key) in plan.calls or (v.key, v.version_id) in sidecars:
            plan.raw.append((v, "raw_metadata" if v.key.endswith(".json") else "raw_media"))

    # Curated root: the call's partition of each top-level folder, and its review folders.
    root = s3.curated_prefix
    folders = [f[len(root):].rstrip("/") for f in _folders(client, s3.curated_bucket, root)]
    for call_id, dates in plan.calls.items():
        prefixes = []
        for day in sorted(dates):
            prefixes += [(call_folder(root, f, day, call_id), _kind_of_folder(f)) for f in folders
                         if f not in (REVIEWS, REPORTS) and f"{root}{f}/" != s3.ops_prefix]
            prefixes += [(root + p, "reviews." + p.split("/")[1]) for p in call_review_folders(day, call_id)]
        if not dates:  # no date known: assignments are keyed by call alone
            prefixes += [(root + p, "reviews.assignments") for p in call_review_folders("2000-01-01", call_id)[2:]]
        for prefix, kind in dict(prefixes).items():
            plan.curated += [(v, kind) for v in _versions(client, s3.curated_bucket, prefix)]

    # Review records not keyed by call (view events): by what they say.
    for v in _versions(client, s3.curated_bucket, root + REVIEWS + "/"):
        if "/call_id=" in v.key or v.is_delete_marker:
            continue
        if names.in_text(v.key) or names.in_bytes(_read_version(client, s3.curated_bucket, v)):
            kind = "reviews.views" if v.key.startswith(root + VIEWS_FOLDER) else "reviews.other"
            plan.curated += [(x, kind) for x in _versions(client, s3.curated_bucket, v.key) if x.key == v.key]

    _plan_ops(settings, client, names, own_leases, plan)
    _plan_reports(settings, client, plan, report_window_days)
    # One entry per version, even when two rules found it.
    plan.curated = list({(v.key, v.version_id): (v, kind) for v, kind in plan.curated}.values())
    return plan


def _kind_of_folder(folder: str) -> str:
    return {MANIFESTS: "manifests", "snippets": "snippets"}.get(folder, "tables")


def _plan_ops(settings: Settings, client, names: _Names, own_leases: set[str], plan: _Plan) -> None:
    """Ops records naming an erased call: removed, or (logs of many calls) rewritten without it."""
    s3 = settings.s3
    by_key: dict[str, list[ObjectVersion]] = defaultdict(list)
    for v in _versions(client, s3.curated_bucket, s3.ops_prefix):
        if not v.key.startswith(erasure_folder(s3.ops_prefix)) and v.key not in own_leases:
            by_key[v.key].append(v)
    for key, versions in by_key.items():
        kind = "ops." + key[len(s3.ops_prefix):].split("/", 1)[0]
        if names.in_text(key):
            plan.curated += [(v, kind) for v in versions]
            continue
        naming, latest_text = [], None
        for v in versions:
            if v.is_delete_marker:
                continue
            blob = _read_version(client, s3.curated_bucket, v)
            if names.in_bytes(blob):
                naming.append(v)
                if v.is_latest:
                    latest_text = blob
        if not naming:
            continue
        if key.endswith(".jsonl") and latest_text is not None:
            kept = [line for line in latest_text.decode("utf-8", "replace").splitlines(keepends=True)
                    if not names.in_text(line)]
            removed = len(latest_text.decode("utf-8", "replace").splitlines()) - len(kept)
            data = "".join(kept).encode() if any(line.strip() for line in kept) else None
            plan.rewrites.append(_Rewrite(key, data, removed, naming))
        else:
            plan.curated += [(v, kind) for v in naming]


def _plan_reports(settings: Settings, client, plan: _Plan, window_days: int | None) -> None:
    """Trend reports whose window (the ``window_days`` call dates up to the report's day; None:
    every later report) holds a date of an erased call."""
    dates = [date.fromisoformat(d) for days in plan.calls.values() for d in days]
    if not dates:
        return
    prefix = f"{settings.s3.curated_prefix}{REPORTS}/"
    for v in _versions(client, settings.s3.curated_bucket, prefix):
        day_text = v.key[len(prefix):].split("/", 1)[0]
        if not _DATE.match(day_text):
            continue
        day = date.fromisoformat(day_text)
        if any(d <= day and (window_days is None or day < d + timedelta(days=window_days)) for d in dates):
            plan.curated.append((v, "reports"))
            if v.is_latest and not v.is_delete_marker:
                plan.report_days.add(day_text)


# --- doing it ------------------------------------------------------------------------------------


def _hash_version(client, bucket: str, v: ObjectVersion) -> str:
    body = client.get_object(Bucket=bucket, Key=v.key, VersionId=v.version_id)["Body"]
    digest = hashlib.sha256()
    for chunk in body.iter_chunks(1 << 20):  # streamed: a recording may be an hour of video
        digest.update(chunk)
    return digest.hexdigest()


def _write_tombstones(settings: Settings, client, request: ErasureRequest, shas: set[str]) -> int:
    s3 = settings.s3
    for sha in sorted(shas):
        body = {"sha256": sha, "request_id": request.request_id, "erased_at": utc_now().isoformat()}
        object_store.put_bytes(client, s3.curated_bucket, tombstone_key(s3.ops_prefix, sha),
                               json.dumps(body, sort_keys=True).encode(), "application/json")
    return len(shas)


def _take_leases(settings: Settings, client, calls: dict[str, set[str]]) -> list[leases.Lease]:
    """Hold every erased call's lease, so no batch analyses (and commits) it meanwhile."""
    held = []
    for call_id, dates in sorted(calls.items()):
        for day in sorted(dates):
            lease = leases.acquire(client, settings, RawRecording(key="", call_id=call_id, call_date=day))
            if isinstance(lease, leases.Busy):
                for own in held:
                    object_store.purge_key(client, settings.s3.curated_bucket, own.key)
                raise ErasureBusy("a call of this request is being analysed: the request waits for the next run")
            held.append(lease)
    return held


def _digested(text: str, calls: Iterable[str], digest: Digester) -> str:
    # Longest first: a call id inside another is replaced after it.
    for call_id in sorted(calls, key=len, reverse=True):
        text = text.replace(call_id, digest.call(call_id))
    return text


def erase(settings: Settings, request: ErasureRequest, *, dry_run: bool = False, client=None,
          report_window_days: int | None = None, requested_at: datetime | None = None) -> ErasureResult:
    """Erase what ``request`` names from both buckets (see the module's docstring); the marts are
    left to ``finish_pending``. A dry run lists what would go and writes nothing."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    digest = digester(settings)
    started = utc_now()
    record_key = erasure_record_key(s3.ops_prefix, request.request_id)
    previous = object_store.get_bytes_and_etag(client, s3.curated_bucket, record_key)
    found = _find(settings, client, request)
    # Under the calls' leases, no batch commits a call while it is being erased.
    held = _take_leases(settings, client, found.calls) if not dry_run else []
    tombstones = 0
    versions_deleted = 0
    try:
        # Planned under the leases: what a batch committed before is listed.
        plan = _plan(settings, client, request, found, report_window_days, {lease.key for lease in held})
        media = [v for v, kind in plan.raw if kind == "raw_media" and not v.is_delete_marker]
        if not dry_run:
            # Tombstones first: a crash half-way must not let a copy of the content through.
            shas = plan.sha256 | {_hash_version(client, s3.raw_bucket, v) for v in media}
            tombstones = _write_tombstones(settings, client, request, shas)
            for rewrite in plan.rewrites:
                if rewrite.data is not None:
                    object_store.put_bytes(client, s3.curated_bucket, rewrite.key, rewrite.data, "application/x-ndjson")
                versions_deleted += object_store.delete_versions(client, s3.curated_bucket, rewrite.versions)
            versions_deleted += object_store.delete_versions(client, s3.raw_bucket, [v for v, _ in plan.raw])
            versions_deleted += object_store.delete_versions(client, s3.curated_bucket, [v for v, _ in plan.curated])
    finally:
        for lease in held:  # every version (a batch's too): a lease key names the call
            object_store.purge_key(client, s3.curated_bucket, lease.key)
    removed = Counter()
    for kind, keys in _keys_by_kind([*plan.raw, *plan.curated]).items():
        removed[kind] += len(keys)
    for rewrite in plan.rewrites:
        removed["ops." + rewrite.key[len(s3.ops_prefix):].split("/", 1)[0] + (".rewritten" if rewrite.data else "")] += 1
    keys = sorted({f"raw:{v.key}" for v, _ in plan.raw} | {f"curated:{v.key}" for v, _ in plan.curated}
                  | {f"curated:{r.key}" for r in plan.rewrites})
    result = ErasureResult(
        request_id=request.request_id,
        dry_run=dry_run,
        target=request.kind,
        target_digest=digest.call(request.target) if request.kind == "call" else digest.subject(request.target),
        calls=sorted(digest.call(c) for c in plan.calls),
        removed=dict(sorted(removed.items())),
        versions_deleted=versions_deleted if not dry_run else len(plan.raw) + len(plan.curated),
        log_lines_removed=sum(r.lines_removed for r in plan.rewrites),
        tombstones=tombstones if not dry_run else len(plan.sha256) + len(media),
        report_days=sorted(plan.report_days),
        keys=[_digested(k, plan.calls, digest) for k in keys],
        already_done=previous is not None,
    )
    if not dry_run:
        result.record_key = record_key
        _write_record(settings, client, request, result, digest, previous, started, requested_at)
    log.info("erasure %s: %d call(s), %d version(s) deleted%s", request.request_id, len(plan.calls),
             result.versions_deleted, " (dry run)" if dry_run else "")
    return result


def _keys_by_kind(found: list[tuple[ObjectVersion, str]]) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = defaultdict(set)
    for v, kind in found:
        keys[kind].add(v.key)
    return keys


def _write_record(settings: Settings, client, request: ErasureRequest, result: ErasureResult, digest: Digester,
                  previous: tuple[bytes, str] | None, started: datetime, requested_at: datetime | None) -> None:
    """The erasure record: who asked, when, what went (counts, digested keys), never content.
    A re-run that removes nothing leaves it as it was; one that removes more is added to it."""
    s3 = settings.s3
    now = utc_now()
    if previous is not None:
        record = json.loads(previous[0])
        if not result.versions_deleted and not result.log_lines_removed:
            return
        record.setdefault("reruns", []).append(
            {"at": now.isoformat(), "removed": result.removed, "versions_deleted": result.versions_deleted,
             "keys": result.keys, "report_days": result.report_days})
        record["report_days"] = sorted(set(record.get("report_days", [])) | set(result.report_days))
        record["marts"] = {"rebuilt_at": None, "verified": None}
    else:
        asked = (datetime.fromisoformat(request.requested_at) if request.requested_at else requested_at) or started
        record = {
            "request_id": request.request_id,
            "requested_by": request.requested_by,
            "requested_at": asked.astimezone(timezone.utc).isoformat(),
            "deadline": (asked + timedelta(days=DEADLINE_DAYS)).astimezone(timezone.utc).isoformat(),
            "started_at": started.isoformat(),
            "target": result.target,
            "target_digest": result.target_digest,
            "digest_key_id": digest.key_id,
            "calls": result.calls,
            "removed": result.removed,
            "versions_deleted": result.versions_deleted,
            "log_lines_removed": result.log_lines_removed,
            "tombstones": result.tombstones,
            "report_days": result.report_days,
            "keys": result.keys,
            "objects_erased_at": now.isoformat(),
            "marts": {"rebuilt_at": None, "verified": None},
            # Set when the marts are rebuilt without the calls (finish_pending): the erasure is complete.
            "completed_at": None,
            "latency_s": None,
            "within_deadline": None,
        }
    object_store.put_bytes(client, s3.curated_bucket, result.record_key, json.dumps(record, indent=2, sort_keys=True).encode(),
                           "application/json")
    object_store.put_bytes(client, s3.curated_bucket, erasure_awaiting_marts_key(s3.ops_prefix, request.request_id), b"",
                           "text/plain")


def read_record(settings: Settings, request_id: str, client=None) -> dict | None:
    """The erasure record of ``request_id`` (with ``reuploads``: copies of the content the batch
    deleted since), or None."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    found = object_store.get_bytes_and_etag(client, s3.curated_bucket, erasure_record_key(s3.ops_prefix, request_id))
    if found is None:
        return None
    record = json.loads(found[0])
    folder = f"{erasure_folder(s3.ops_prefix)}reuploads/{request_id}/"
    record["reuploads"] = [json.loads(object_store.get_bytes(client, s3.curated_bucket, o.key))
                           for o in object_store.list_objects(client, s3.curated_bucket, folder)]
    return record


# --- the marts, afterwards -------------------------------------------------------------------


def scrub_marts_leftovers(marts_path: str | os.PathLike) -> list[str]:
    """Remove what an older marts file may have left beside the new one: a WAL (the new file is
    checkpointed, so a WAL here belongs to the old one) and half builds of processes that are
    gone. Returns the names removed."""
    target = Path(marts_path)
    removed = []
    wal = target.with_name(target.name + ".wal")
    if wal.exists():
        wal.unlink()
        removed.append(wal.name)
    for stale in target.parent.glob(f"{target.name}.building-*"):
        pid = stale.name.rsplit("-", 1)[-1].split(".", 1)[0]
        if pid.isdigit() and leases.process_alive(int(pid)):
            continue  # a build in progress
        stale.unlink(missing_ok=True)
        removed.append(stale.name)
    return removed


def marts_call_digests(marts_path: str | os.PathLike, digest: Digester) -> set[str]:
    """Digests of every call id in any table of the marts file."""
    import duckdb

    found: set[str] = set()
    with duckdb.connect(str(marts_path), read_only=True) as con:
        tables = con.execute(
            "select table_name from duckdb_columns() where column_name = 'call_id' and schema_name = 'main' "
            "and table_name in (select table_name from duckdb_tables())"
        ).fetchall()
        for (table,) in tables:
            rows = con.execute(f'select distinct call_id::varchar from "{table}" where call_id is not null').fetchall()
            found |= {digest.call(row[0]) for row in rows}
    return found


def awaiting_marts(settings: Settings, client=None) -> list[str]:
    """Request ids erased from the buckets whose marts have not been rebuilt yet."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    folder = erasure_awaiting_marts_folder(s3.ops_prefix)
    return sorted(o.key[len(folder):] for o in object_store.list_objects(client, s3.curated_bucket, folder))


def finish_pending(settings: Settings, *, build_marts: Callable[[Settings], Any],
                   build_report: Callable[..., Any] | None = None, client=None) -> dict:
    """Rebuild the marts (``build_marts(settings)``, returning an object with ``path``) once for
    every request erased from the buckets but not from the marts yet; check the new file holds
    none of their calls; rebuild the trend reports the erasure deleted
    (``build_report(settings, day=, marts_path=)``); then complete each record."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    pending = awaiting_marts(settings, client)
    if not pending:
        return {"requests": [], "marts": None}
    digest = digester(settings)
    records = {rid: read_record(settings, rid, client) for rid in pending}
    for rid, record in records.items():
        if record is not None and record.get("digest_key_id") != digest.key_id:
            raise ErasureError(f"erasure record {rid} was made with another digest key: use the same "
                               "erasure.digest_key_path on every host")
    marts = build_marts(settings)
    path = Path(marts.path if hasattr(marts, "path") else marts["path"])
    leftovers = scrub_marts_leftovers(path)
    still = marts_call_digests(path, digest)
    for rid, record in records.items():
        if record is not None and still & set(record["calls"]):
            raise ErasureError(f"the rebuilt marts still hold a call of erasure {rid}: was it committed again?")
    days = sorted({d for r in records.values() if r for d in r.get("report_days", [])})
    if build_report is not None:
        for day in days:
            build_report(settings, day=day, marts_path=str(path))
    now = utc_now()
    for rid, record in records.items():
        if record is not None:
            record.pop("reuploads", None)
            record["marts"] = {"rebuilt_at": now.isoformat(), "verified": True, "path": path.name,
                               "leftovers_removed": leftovers}
            record["reports_rebuilt"] = record.get("report_days", []) if build_report is not None else []
            record["completed_at"] = now.isoformat()
            record["latency_s"] = round((now - datetime.fromisoformat(record["requested_at"])).total_seconds(), 3)
            record["within_deadline"] = now <= datetime.fromisoformat(record["deadline"])
            object_store.put_bytes(client, s3.curated_bucket, erasure_record_key(s3.ops_prefix, rid),
                                   json.dumps(record, indent=2, sort_keys=True).encode(), "application/json")
        object_store.purge_key(client, s3.curated_bucket, erasure_awaiting_marts_key(s3.ops_prefix, rid))
    log.info("marts rebuilt for %d erasure request(s); %d trend report(s) rebuilt", len(pending), len(days))
    return {"requests": pending, "marts": str(path), "leftovers_removed": leftovers, "reports_rebuilt": days}


# --- requests dropped in the bucket (the callaffect_erasure DAG) -------------------------------


@dataclass
class RequestsReport:
    done: dict[str, dict] = field(default_factory=dict)  # request id -> removed counts
    rejected: dict[str, str] = field(default_factory=dict)  # rejected record key -> reason
    busy: list[str] = field(default_factory=list)  # waiting for a call's analysis to end
    failed: dict[str, str] = field(default_factory=dict)  # request key's digest -> error type

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _reject(settings: Settings, client, key: str, reason: str) -> str:
    s3 = settings.s3
    rejected = erasure_rejected_key(s3.ops_prefix, key)
    body = {"request_key_sha256": hashlib.sha256(key.encode()).hexdigest(), "reason": reason,
            "rejected_at": utc_now().isoformat()}
    object_store.put_bytes(client, s3.curated_bucket, rejected, json.dumps(body, sort_keys=True).encode(), "application/json")
    object_store.purge_key(client, s3.curated_bucket, key)  # it may hold an id in clear
    log.warning("erasure request rejected (%s): %s", rejected, reason)
    return rejected


def process_requests(settings: Settings, *, report_window_days: int | None = None, client=None) -> RequestsReport:
    """Work through the requests under ``<ops_prefix>erasure/requests/<request_id>.json``: each
    valid one is erased and its request object deleted (the record under ``done/`` stays); an
    invalid one is deleted and a rejection with the reason kept. A request meeting a call under
    analysis waits for the next run. Raises at the end if one failed (the others are done)."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    folder = erasure_requests_folder(s3.ops_prefix)
    report = RequestsReport()
    for obj in list(object_store.list_objects(client, s3.curated_bucket, folder)):
        name = obj.key[len(folder):]
        try:
            if obj.size > MAX_REQUEST_BYTES:
                raise RequestError(f"request is {obj.size} bytes, over the {MAX_REQUEST_BYTES}-byte limit")
            if not name.endswith(".json") or not valid_request_id(name.removesuffix(".json")):
                raise RequestError("the object's name is not <request_id>.json with a valid request id")
            request = parse_request(object_store.get_bytes(client, s3.curated_bucket, obj.key))
            if request.request_id != name.removesuffix(".json"):
                raise RequestError("request_id differs from the object's name")
        except RequestError as exc:
            report.rejected[_reject(settings, client, obj.key, str(exc))] = str(exc)
            continue
        try:
            result = erase(settings, request, client=client, report_window_days=report_window_days,
                           requested_at=obj.last_modified)
        except ErasureBusy:
            report.busy.append(request.request_id)
            continue
        except Exception as exc:  # noqa: BLE001 - one request's S3 error must not hold the others back
            log.warning("erasure request %s failed: %s", request.request_id, type(exc).__name__)
            report.failed[request.request_id] = type(exc).__name__
            continue
        object_store.purge_key(client, s3.curated_bucket, obj.key)
        report.done[request.request_id] = {"removed": result.removed, "versions_deleted": result.versions_deleted,
                                           "already_done": result.already_done}
    if report.failed:
        raise ErasureError(f"{len(report.failed)} erasure request(s) failed and wait for the next run: "
                           + ", ".join(sorted(report.failed)))
    return report
