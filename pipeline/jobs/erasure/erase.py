"""Doing it: under the calls' leases, tombstones first, then every planned version deleted and
the logs rewritten; the erasure record (counts and digested keys, never content)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pipeline.clock import utc_now
from pipeline.jobs.erasure.digests import Digester, digester
from pipeline.jobs.erasure.plan import find, make_plan
from pipeline.jobs.erasure.requests import ErasureRequest
from pipeline.settings import Settings
from pipeline.storage import leases, object_store
from pipeline.storage.keys import (
    RawRecording,
    erasure_awaiting_marts_key,
    erasure_folder,
    erasure_record_key,
    tombstone_key,
)
from pipeline.storage.object_store import ObjectVersion

log = logging.getLogger(__name__)

DEADLINE_DAYS = 30  # Art. 12(3): "without undue delay and in any event within one month"


class ErasureBusy(RuntimeError):
    """A call of the request is being analysed right now: the request waits for the next run."""


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
    """Erase what ``request`` names from both buckets (see the package's docstring); the marts are
    left to ``finish_pending``. A dry run lists what would go and writes nothing."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    digest = digester(settings)
    started = utc_now()
    record_key = erasure_record_key(s3.ops_prefix, request.request_id)
    previous = object_store.get_bytes_and_etag(client, s3.curated_bucket, record_key)
    found = find(settings, client, request)
    # Under the calls' leases, no batch commits a call while it is being erased.
    held = _take_leases(settings, client, found.calls) if not dry_run else []
    tombstones = 0
    versions_deleted = 0
    try:
        # Planned under the leases: what a batch committed before is listed.
        plan = make_plan(settings, client, request, found, report_window_days, {lease.key for lease in held})
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
