"""pipeline.jobs.retention against moto's real S3 server: only processed, old raw media goes, and is logged."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone

import pytest
from factories import make_call_tables, set_values

from pipeline.storage import object_store
from pipeline.call.exports import CallResult
from pipeline.jobs.batch import discover_pending, process_recording
from pipeline.storage.curated import CuratedStore, snippet_key, table_key
from pipeline.manifest import CallManifest
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.jobs.retention import run_retention
from pipeline.settings import RetentionSettings, load_settings

NOW = datetime(2024, 4, 1, 12, 0, tzinfo=timezone.utc)  # 30 days back: 2024-03-02
OLD, RECENT = "2024-02-15", "2024-03-20"


def tables_analyze(media_path, call_id, *, settings, call_date, **kwargs) -> CallResult:
    """bad*: unusable input; gatefail*: tables the quality gate rejects; else valid tables."""
    if call_id.startswith("bad"):
        return CallResult(CallManifest(call_id=call_id, status="quarantined", reason="truncated file"))
    tables = make_call_tables(call_id, call_date, duration_s=60.0, seed=len(call_id))
    if call_id.startswith("gatefail"):
        tables["speaker_affect"] = set_values(tables["speaker_affect"], "valence", {0: 3.0})
    return CallResult(CallManifest(call_id=call_id, status="ok", sha256=f"sha-of-{call_id}"), tables)


def _raw_keys(settings) -> set[str]:
    client = object_store.s3_client(settings.s3)
    return {o.key for o in object_store.list_objects(client, settings.s3.raw_bucket)}


def _curated(settings, prefix: str = "") -> dict[str, str]:
    client = object_store.s3_client(settings.s3)
    return {o.key: o.etag for o in object_store.list_objects(client, settings.s3.curated_bucket, prefix)}


def _setup_calls(settings) -> str:
    """Old processed and gated, recent processed, old unprocessed, old quarantined by analysis,
    old failed by the gate, old committed but not gated yet, old re-uploaded after processing."""
    client = object_store.s3_client(settings.s3)
    raw, prefix = settings.s3.raw_bucket, settings.s3.raw_prefix
    for day, call_id in ((OLD, "old-ok"), (RECENT, "new-ok"), (OLD, "bad-old"), (OLD, "old-reup"), (OLD, "gatefail-old")):
        object_store.put_bytes(client, raw, f"{prefix}{day}/{call_id}.wav", b"media of " + call_id.encode())
    object_store.put_bytes(client, raw, f"{prefix}{OLD}/old-ok.json", b'{"consent": {"video": false}}')
    for rec in discover_pending(settings, client):
        process_recording(rec, settings, tables_analyze)
    assert {c: r.passed for c, r in gate_committed_calls(settings)} == {
        "old-ok": True, "old-reup": True, "gatefail-old": False, "new-ok": True,
    }
    # Committed ok after the gate ran (a run whose gate failed): not gated, so not deletable.
    object_store.put_bytes(client, raw, f"{prefix}{OLD}/old-ungated.wav", b"media of old-ungated")
    [ungated] = discover_pending(settings, client)
    process_recording(ungated, settings, tables_analyze)
    time.sleep(1.1)  # S3 times have 1 s resolution: the re-upload must be visibly later than its commit
    object_store.put_bytes(client, raw, f"{prefix}{OLD}/old-reup.wav", b"a different recording")
    object_store.put_bytes(client, raw, f"{prefix}{OLD}/old-unprocessed.wav", b"not analysed yet")
    return prefix


def test_retention_deletes_only_processed_old_media_and_logs_it(settings):
    prefix = _setup_calls(settings)
    curated_before = _curated(settings)

    dry_settings = dataclasses.replace(settings, retention=RetentionSettings(raw_max_age_days=30, dry_run=True))
    dry = run_retention(dry_settings, now=NOW)
    assert [(r["key"], r["dry_run"]) for r in dry.deleted] == [
        (f"{prefix}{OLD}/old-ok.json", True), (f"{prefix}{OLD}/old-ok.wav", True),
    ]
    assert len(_raw_keys(settings)) == 8  # a dry run deletes nothing

    report = run_retention(settings, now=NOW)

    assert not report.dry_run
    assert _raw_keys(settings) == {
        f"{prefix}{RECENT}/new-ok.wav", f"{prefix}{OLD}/bad-old.wav", f"{prefix}{OLD}/old-reup.wav",
        f"{prefix}{OLD}/old-unprocessed.wav", f"{prefix}{OLD}/gatefail-old.wav", f"{prefix}{OLD}/old-ungated.wav",
    }
    kept = {k["call_id"]: k["reason"] for k in report.kept}
    assert kept.pop("gatefail-old").startswith("quarantined: quality gate: speaker_affect.valence")
    assert kept == {
        "bad-old": "quarantined: truncated file",
        "old-reup": "raw object changed after it was processed",
        "old-unprocessed": "not processed",
        "old-ungated": "not passed the quality gate yet",
    }
    # Derived output is kept; only the ops log was added.
    curated_after = _curated(settings)
    assert {k: v for k, v in curated_after.items() if not k.startswith(settings.s3.ops_prefix)} == curated_before
    assert CuratedStore(settings).read_manifest(OLD, "old-ok").status == "ok"

    logs = _curated(settings, f"{settings.s3.ops_prefix}retention/")
    assert len(logs) == 2 and report.log_key in logs and dry.log_key in logs
    assert report.log_key.startswith(f"{settings.s3.ops_prefix}retention/date=")
    client = object_store.s3_client(settings.s3)
    lines = object_store.get_bytes(client, settings.s3.curated_bucket, report.log_key).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert records == report.deleted
    assert [(r["call_id"], r["key"], r["sha256"], r["dry_run"]) for r in records] == [
        ("old-ok", f"{prefix}{OLD}/old-ok.json", "sha-of-old-ok", False),
        ("old-ok", f"{prefix}{OLD}/old-ok.wav", "sha-of-old-ok", False),
    ]
    assert all(r["deleted_at"] and "older than 30 days" in r["reason"] for r in records)

    # Idempotent: nothing left to delete, nothing logged.
    again = run_retention(settings, now=NOW)
    assert again.deleted == [] and again.log_key is None
    assert _curated(settings, f"{settings.s3.ops_prefix}retention/") == logs


def test_age_boundary(settings):
    prefix = _setup_calls(settings)
    # Recorded 2024-02-15: exactly 30 days old all through 2024-03-16, older from 2024-03-17.
    exactly = run_retention(settings, now=datetime(2024, 3, 16, 23, 59, tzinfo=timezone.utc))
    assert exactly.deleted == [] and exactly.kept == [] and len(_raw_keys(settings)) == 8
    older = run_retention(settings, now=datetime(2024, 3, 17, 0, 1, tzinfo=timezone.utc))
    assert [r["key"] for r in older.deleted] == [f"{prefix}{OLD}/old-ok.json", f"{prefix}{OLD}/old-ok.wav"]


def _commit_with_snippets(settings, call_id: str, day: str) -> list[str]:
    flag_ids = [f"{call_id}-f0", f"{call_id}-f1"]
    CuratedStore(settings).commit(CallManifest(call_id, call_date=day), make_call_tables(call_id, day),
                                  {f: b"OggS review audio" for f in flag_ids})
    return [snippet_key("", day, call_id, f) for f in flag_ids]


def test_snippets_past_their_age_are_deleted_and_logged_and_the_scores_stay(settings):
    # 90 days before NOW is 2024-01-02: a call of that day is exactly 90 days old and kept.
    old = _commit_with_snippets(settings, "old-snip", "2023-12-20")
    kept = _commit_with_snippets(settings, "edge-snip", "2024-01-02") + _commit_with_snippets(settings, "new-snip", RECENT)
    store = CuratedStore(settings)

    dry = run_retention(dataclasses.replace(settings, retention=RetentionSettings(dry_run=True)), now=NOW)
    assert [r["key"] for r in dry.deleted] == old and set(store.list("snippets/")) == set(old + kept)

    report = run_retention(settings, now=NOW)
    assert set(store.list("snippets/")) == set(kept)
    assert [(r["call_id"], r["key"], r["kind"], r["bucket"], r["dry_run"]) for r in report.deleted] == [
        ("old-snip", key, "snippet", settings.s3.curated_bucket, False) for key in old
    ]
    assert all("recorded 2023-12-20, older than 90 days" in r["reason"] for r in report.deleted)
    client = object_store.s3_client(settings.s3)
    lines = object_store.get_bytes(client, settings.s3.curated_bucket, report.log_key).decode().splitlines()
    assert [json.loads(line) for line in lines] == report.deleted
    # The derived scores stay, snippet keys and all: only the audio is gone.
    assert store.read_manifest("2023-12-20", "old-snip").status == "ok"
    assert store.read_bytes(table_key("", "qa_flags", "2023-12-20", "old-snip")) is not None
    assert run_retention(settings, now=NOW).deleted == []

    shorter = dataclasses.replace(settings, retention=RetentionSettings(snippet_max_age_days=0))
    assert {r["key"] for r in run_retention(shorter, now=NOW).deleted} == set(kept)


@pytest.mark.parametrize("days", ["-1", "-30", "ten"])
@pytest.mark.parametrize("setting", ["raw_max_age_days", "snippet_max_age_days"])
def test_a_negative_or_unreadable_retention_age_fails_at_load(days, setting):
    with pytest.raises(ValueError, match=f"retention.{setting}"):
        load_settings(env={f"CALLAFFECT_RETENTION__{setting.upper()}": days})
