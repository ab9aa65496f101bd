"""pipeline.jobs.batch on the real local stack (moto's S3 server, a local Ray cluster) with a fake analysis.

The fake stands in for pipeline.call.analyze.analyze_call (same signature, same CallResult); it runs in
Ray worker processes, which import this module by name (tests/ is on their path, see conftest).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path


from stack_helpers import curated_snapshot, read_curated_parquet

from pipeline.storage import object_store
from pipeline.call.exports import CallResult
from pipeline.jobs.batch import (
    WORK_ROOT,
    _owner_alive,
    discover_pending,
    process_recording,
    recording_from_dict,
    recording_to_dict,
    run_batch,
    settings_from_dict,
)
from pipeline.storage.curated import CuratedStore, manifest_key, table_key
from pipeline.manifest import CallManifest
from pipeline.schemas import to_table

DAY = "2024-05-02"


def fake_analyze(media_path, call_id, *, settings, call_date=None, metadata=None, source_uri=None) -> CallResult:
    """Behaves by call id: boom* raises, bad* is unusable input, crash* kills its worker, flaky*
    loses its S3 connection once mid-commit."""
    data = Path(media_path).read_bytes()
    if call_id.startswith("boom"):
        raise RuntimeError("model exploded\nsecond line of detail")
    if call_id.startswith("crash"):
        os._exit(3)
    if call_id.startswith("bad"):
        return CallResult(CallManifest(call_id=call_id, status="quarantined", reason="no audio stream"))
    if call_id.startswith("flaky"):
        _fail_next_affect_upload_once(Path(tempfile.gettempdir()) / f"failed-once-{settings.s3.raw_bucket}-{call_id}")
    manifest = CallManifest(
        call_id=call_id, status="ok", sha256="f" * 64, duration_s=12.0,
        versions={"worker_pid": str(os.getpid()), "min_speakers": str(metadata.min_speakers)},
    )
    calls = to_table("calls", [{
        "call_id": call_id, "call_date": date.fromisoformat(call_date), "source_uri": source_uri,
        "sha256": "f" * 64, "duration_s": 12.0, "source_sample_rate": 8000, "source_channels": 1,
        "has_video": False, "speech_s": 10.0, "num_speakers": 2, "language": "en",
        "processed_at": datetime(2024, 5, 3, tzinfo=timezone.utc), "pipeline_version": "test",
        "settings_fingerprint": settings.fingerprint(), "non_talk_s": 2.0, "overlap_s": 0.0, "channel_layout": "mono",
        "agent_id": None, "queue": None,
    }])
    affect = to_table("speaker_affect", [{
        "call_id": call_id, "speaker": f"S{i % 2}", "role": "customer", "start_s": 5.0 * i, "end_s": 5.0 * i + 5,
        "valence": -0.5, "arousal": 0.3, "confidence": 0.8, "text_valence": -0.6, "voice_valence": -0.2,
        "voice_arousal": 0.3, "modalities": "text,voice", "face_valence": None, "face_arousal": None,
    } for i in range(len(data) % 3 + 2)])
    return CallResult(manifest, {"calls": calls, "speaker_affect": affect})


def _fail_next_affect_upload_once(marker: Path) -> None:
    """Make this worker's next speaker_affect upload fail, once ever: an S3 outage mid-commit."""
    if marker.exists():
        return
    marker.touch()
    real_put = object_store.put_bytes

    def failing_put(client, bucket, key, data, *args, **kwargs):
        if "speaker_affect/" in key:
            object_store.put_bytes = real_put
            raise ConnectionError("injected S3 failure")
        return real_put(client, bucket, key, data, *args, **kwargs)

    object_store.put_bytes = failing_put


def fake_analyze_fewer_tables(media_path, call_id, **kwargs) -> CallResult:
    result = fake_analyze(media_path, call_id, **kwargs)
    del result.tables["speaker_affect"]
    return result


def _put_call(settings, call_id, day=DAY, body=b"RIFF-not-really-audio", metadata=None):
    client = object_store.s3_client(settings.s3)
    object_store.put_bytes(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{day}/{call_id}.wav", body)
    if metadata is not None:
        object_store.put_bytes(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{day}/{call_id}.json",
                          json.dumps(metadata).encode() if isinstance(metadata, dict) else metadata)


def _ours(scratch) -> bool:
    """Scratch of this test process or its Ray workers: another process on the machine (a second
    suite, a bench) may have its own in flight."""
    import psutil

    ours = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    return int(scratch.name.split("-")[0]) in ours


def test_batch_commits_every_call_and_reruns_change_nothing(settings, ray_local, tmp_path):
    for call_id in ("good-1", "good-2"):
        _put_call(settings, call_id)
    _put_call(settings, "good-0", day="2024-05-01", metadata={"min_speakers": 2})
    _put_call(settings, "boom-1")
    _put_call(settings, "bad-1")
    _put_call(settings, "flaky-1")
    s3 = settings.s3

    pending = discover_pending(settings)
    assert [(r.call_date, r.call_id) for r in pending] == [
        ("2024-05-01", "good-0"), (DAY, "bad-1"), (DAY, "boom-1"), (DAY, "flaky-1"), (DAY, "good-1"), (DAY, "good-2"),
    ]  # metadata JSON is not a recording; sorted by date, then call id

    report = run_batch(settings, analyze_fn=fake_analyze)

    assert sorted(report.ok) == ["good-0", "good-1", "good-2"]
    assert report.quarantined == {
        "bad-1": "no audio stream",
        "boom-1": "internal error: RuntimeError: model exploded",
    }
    assert report.failed == {"flaky-1": "ConnectionError: injected S3 failure"}
    manifests = {m.call_id: m for _, m in CuratedStore(settings).manifests()}
    assert set(manifests) == {"good-0", "good-1", "good-2", "bad-1", "boom-1"}
    assert not [d for d in WORK_ROOT.iterdir() if _owner_alive(d) and _ours(d)]  # scratch cleaned

    # Good calls: every table under its deterministic key, then the manifest that commits them.
    good = manifests["good-0"]
    assert good.table_keys == {
        "calls": table_key(s3.curated_prefix, "calls", "2024-05-01", "good-0"),
        "speaker_affect": table_key(s3.curated_prefix, "speaker_affect", "2024-05-01", "good-0"),
    }
    assert good.source_uri == f"s3://{s3.raw_bucket}/{s3.raw_prefix}2024-05-01/good-0.wav"
    assert good.call_date == "2024-05-01" and good.versions["min_speakers"] == "2"  # metadata reached the analysis
    affect = read_curated_parquet(settings, good.table_keys["speaker_affect"])
    assert affect.metadata.num_rows == good.tables["speaker_affect"] > 0
    assert affect.metadata.row_group(0).column(0).compression == "ZSTD"
    # The analysis ran in Ray worker processes, not in this one.
    assert {m.versions["worker_pid"] for m in manifests.values() if m.status == "ok"}.isdisjoint({str(os.getpid())})

    # Quarantined calls: a manifest with the reason and no tables.
    for call_id in ("bad-1", "boom-1"):
        assert manifests[call_id].status == "quarantined" and manifests[call_id].table_keys == {}
    assert manifests["boom-1"].sha256  # of the input, so ops can match it
    snapshot = curated_snapshot(settings)
    assert not [k for k in snapshot if ("call_id=bad-1/" in k or "call_id=boom-1/" in k) and "_manifests/" not in k]

    # The call whose upload failed mid-way has a table but no manifest: not committed.
    assert table_key(s3.curated_prefix, "calls", DAY, "flaky-1") in snapshot
    assert manifest_key(s3.curated_prefix, DAY, "flaky-1") not in snapshot

    # Next run: only that call is pending; it commits, overwriting its own keys.
    assert [r.call_id for r in discover_pending(settings)] == ["flaky-1"]
    again = run_batch(settings, analyze_fn=fake_analyze)
    assert (again.ok, again.quarantined, again.failed) == (["flaky-1"], {}, {})
    after = curated_snapshot(settings)
    assert set(after) - set(snapshot) == {
        manifest_key(s3.curated_prefix, DAY, "flaky-1"), table_key(s3.curated_prefix, "speaker_affect", DAY, "flaky-1"),
    }

    # Then nothing is pending, and a run changes no object.
    assert discover_pending(settings) == []
    idle = run_batch(settings, analyze_fn=fake_analyze)
    assert (idle.ok, idle.quarantined, idle.failed) == ([], {}, {})
    assert curated_snapshot(settings) == after

    # Committed calls handed over explicitly (an Airflow retry) are skipped...
    given = [recording_to_dict(r) for r in pending if r.call_id in ("good-1", "bad-1")]
    skipped = run_batch(settings, recordings=json.loads(json.dumps(given)), analyze_fn=fake_analyze)
    assert sorted(skipped.skipped) == ["bad-1", "good-1"] and skipped.ok == []
    assert curated_snapshot(settings) == after
    # ...unless reprocessing is asked for: same keys, overwritten; only the replaced manifests
    # are added, to each call's history.
    redone = run_batch(settings, recordings=given, analyze_fn=fake_analyze, reprocess=True)
    assert (redone.ok, list(redone.quarantined)) == (["good-1"], ["bad-1"])
    added = set(curated_snapshot(settings)) - set(after)
    assert set(after) <= set(curated_snapshot(settings))
    assert sorted(k.split("/history/")[0] for k in added) == [
        f"{s3.curated_prefix}_manifests/date={DAY}/call_id={c}" for c in ("bad-1", "good-1")
    ]


def test_a_call_that_kills_its_worker_is_retried_then_quarantined(settings, ray_local):
    """A crash is an infrastructure failure, not a verdict on the input: the call is retried in
    later runs, and quarantined only after ray.max_call_failures runs that all failed."""
    settings = dataclasses.replace(settings, ray=dataclasses.replace(settings.ray, max_call_failures=2))
    _put_call(settings, "crash-1")
    _put_call(settings, "good-9")

    first = run_batch(settings, analyze_fn=fake_analyze)

    assert first.ok == ["good-9"] and first.quarantined == {}
    assert first.failed["crash-1"].startswith("WorkerCrashedError")
    assert [r.call_id for r in discover_pending(settings)] == ["crash-1"]

    second = run_batch(settings, analyze_fn=fake_analyze)

    assert second.failed == {} and second.quarantined["crash-1"].startswith("failed 2 times: WorkerCrashedError")
    assert discover_pending(settings) == []
    # The killed workers could not clean up; the next call's task removes what they left.
    good = {"key": f"{settings.s3.raw_prefix}{DAY}/good-9.wav", "call_id": "good-9", "call_date": DAY}
    assert process_recording(good, settings, fake_analyze, reprocess=True).manifest.status == "ok"
    assert not [d for d in WORK_ROOT.iterdir() if not _owner_alive(d)]


def test_process_recording_in_process(settings):
    """The task body alone: bad metadata quarantines; a re-run drops tables it no longer makes."""
    _put_call(settings, "meta-1", metadata=b"{not json")
    _put_call(settings, "good-5")
    [good, meta] = discover_pending(settings)

    manifest = process_recording(recording_to_dict(meta), settings.to_dict(), fake_analyze).manifest
    assert manifest.status == "quarantined"
    assert manifest.reason.startswith("metadata is not valid JSON")

    first = process_recording(good, settings, fake_analyze).manifest
    assert set(first.table_keys) == {"calls", "speaker_affect"}
    assert process_recording(good, settings, fake_analyze).skipped == "committed"
    second = process_recording(good, settings, fake_analyze_fewer_tables, reprocess=True).manifest
    assert set(second.table_keys) == {"calls"}
    keys = set(curated_snapshot(settings))
    assert first.table_keys["speaker_affect"] not in keys and second.table_keys["calls"] in keys


def test_plain_data_round_trips(settings):
    assert settings_from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    rec = recording_from_dict({"key": f"recordings/{DAY}/c.wav", "call_id": "c", "call_date": DAY, "size": 3, "etag": "e"})
    assert recording_from_dict(json.loads(json.dumps(recording_to_dict(rec)))) == rec
