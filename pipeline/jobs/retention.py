"""Retention: delete raw media (and its metadata JSON) of processed calls past a maximum age,
and review snippets past theirs.

Only calls committed with status ok that have passed the quality gate lose their raw media; the
derived Parquet stays. An unprocessed, ungated or quarantined call is never touched (the gate
may still quarantine a call, and an operator must be able to reprocess it from its media).
Review snippets (curated ``snippets/``) go by the call's date alone, past
``retention.snippet_max_age_days``; the flags and scores stay.
Every deletion is logged as JSON Lines under ``s3://<curated_bucket>/<ops_prefix>retention/``.
Idempotent: what is gone is no longer listed, so a second run does (and logs) nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from pipeline.clock import utc_now
from pipeline.manifest import CallManifest
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.curated import SNIPPETS, CuratedStore, parse_snippet_key
from pipeline.storage.keys import parse_raw_key, retention_log_key


@dataclass
class RetentionReport:
    dry_run: bool
    deleted: list[dict] = field(default_factory=list)  # the log records (would-be deletions in a dry run)
    kept: list[dict] = field(default_factory=list)  # old recordings kept: call_id, key, reason
    log_key: str | None = None

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "deleted": self.deleted, "kept": self.kept, "log_key": self.log_key}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _keep_reason(manifest: CallManifest | None, source_uri: str, last_modified: datetime) -> str | None:
    """Why this old recording must stay, or None when its raw media may go."""
    if manifest is None:
        return "not processed"
    if manifest.status != "ok":
        return f"quarantined: {manifest.reason}"
    if not manifest.loadable:
        return "not passed the quality gate yet"
    if manifest.source_uri != source_uri:
        return f"committed output is for another object ({manifest.source_uri})"
    processed_at = _parse_time(manifest.created_at)
    if processed_at is None or last_modified > processed_at:
        return "raw object changed after it was processed"
    return None


def run_retention(settings: Settings, *, now: datetime | None = None, client=None) -> RetentionReport:
    """Apply the retention policy as of ``now`` (default: the current time): raw media, then
    review snippets."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    now = now or utc_now()
    report = RetentionReport(dry_run=settings.retention.dry_run)
    try:
        _expire_raw_media(settings, client, now, report)
        _expire_snippets(settings, CuratedStore(settings, client=client), now, report)
    finally:
        # Written even when a deletion fails half-way, so every deletion that happened is logged.
        if report.deleted:
            report.log_key = retention_log_key(s3.ops_prefix, utc_now())
            body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in report.deleted)
            object_store.put_bytes(client, s3.curated_bucket, report.log_key, body.encode(), "application/x-ndjson")
    return report


def _expire_raw_media(settings: Settings, client, now: datetime, report: RetentionReport) -> None:
    """Delete (or, in a dry run, list) raw media past raw_max_age_days whose call may lose it."""
    s3, policy = settings.s3, settings.retention
    store = CuratedStore(settings, client=client)
    cutoff = (now - timedelta(days=policy.raw_max_age_days)).date()
    objects = {o.key: o for o in object_store.list_objects(client, s3.raw_bucket, s3.raw_prefix)}
    recordings = [r for r in (parse_raw_key(k, s3.raw_prefix) for k in objects) if r is not None]
    media_per_call = Counter((r.call_date, r.call_id) for r in recordings)
    for rec in recordings:
        if date.fromisoformat(rec.call_date) >= cutoff:
            continue
        manifest = store.read_manifest(rec.call_date, rec.call_id)
        source_uri = f"s3://{s3.raw_bucket}/{rec.key}"
        reason = _keep_reason(manifest, source_uri, objects[rec.key].last_modified)
        if reason:
            report.kept.append({"call_id": rec.call_id, "key": rec.key, "reason": reason})
            continue
        keys = [rec.key]
        # The metadata JSON is shared by every media file of the call: it goes with the last.
        if rec.metadata_key in objects and media_per_call[(rec.call_date, rec.call_id)] == 1:
            keys.insert(0, rec.metadata_key)  # first, so a crash never orphans it
        for key in keys:
            if not policy.dry_run:
                object_store.delete_object(client, s3.raw_bucket, key)
            report.deleted.append(
                {
                    "call_id": rec.call_id,
                    "bucket": s3.raw_bucket,
                    "key": key,
                    "kind": "media" if key == rec.key else "metadata",
                    "sha256": manifest.sha256,
                    "deleted_at": utc_now().isoformat(),
                    "reason": (
                        f"processed (status ok, quality gate passed); recorded {rec.call_date}, "
                        f"older than {policy.raw_max_age_days} days"
                    ),
                    "dry_run": policy.dry_run,
                }
            )


def _expire_snippets(settings: Settings, store: CuratedStore, now: datetime, report: RetentionReport) -> None:
    """Delete (or, in a dry run, list) review snippets of calls recorded past snippet_max_age_days."""
    policy = settings.retention
    cutoff = (now - timedelta(days=policy.snippet_max_age_days)).date()
    for key in store.list(SNIPPETS + "/"):
        found = parse_snippet_key(key, "")
        if found is None or date.fromisoformat(found[0]) >= cutoff:
            continue
        if not policy.dry_run:
            store.delete(key)
        report.deleted.append(
            {
                "call_id": found[1],
                "bucket": settings.s3.curated_bucket,
                "key": store.stored_key(key),
                "kind": "snippet",
                "sha256": None,  # a snippet is derived audio, not the recording the hash names
                "deleted_at": utc_now().isoformat(),
                "reason": f"review snippet; recorded {found[0]}, older than {policy.snippet_max_age_days} days",
                "dry_run": policy.dry_run,
            }
        )
