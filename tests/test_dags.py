"""The Airflow DAGs: they parse fast and light, and run with ``dag.test()`` on the real local stack.

``dag.test()`` runs every task in this process against a throwaway SQLite home (airflow_env);
S3 is moto's server, the batch runs on a local Ray cluster, the marts are a real DuckDB file.
The analysis is a fast stand-in (valid tables from tests/factories.py) sent to Ray workers by
reference: they import this module by name (tests/ is on their path, see conftest).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest
from airflow_env import use_settings
from factories import make_call_tables, set_values

from pipeline.storage import object_store
from pipeline.call.exports import CallResult
from pipeline.jobs.batch import process_recording, recording_from_dict
from pipeline.storage.curated import CuratedStore
from pipeline.devtools.demo import DAGS_FOLDER, run_dag, task_result
from pipeline.manifest import CallManifest
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.schemas import SCHEMA_VERSION
from pipeline.settings import RaySettings, RetentionSettings

DAY = date.today().isoformat()
DAG_IDS = {"callaffect_landing", "callaffect_nightly", "callaffect_retention", "callaffect_erasure"}
# Modules a DAG file must not import at parse time: the DAG processor re-parses files every
# few seconds, and these cost seconds and hundreds of MB. (boto3 is not among them: the Amazon
# provider's S3 sensor imports it, about 0.1 s.)
HEAVY = ("ray", "duckdb", "pyarrow", "great_expectations", "torch", "pandas", "numpy")


@pytest.fixture(autouse=True)
def _airflow(airflow_home):
    """Every test here talks to Airflow: its throwaway home must exist before anything imports it."""


def fake_analyze(media_path, call_id, *, settings, call_date=None, metadata=None, source_uri=None) -> CallResult:
    """analyze_call's contract in milliseconds: an empty file is unusable input, anything else a
    two-speaker call whose customer is frustrated (one qa flag); "invalid*" calls carry a valence
    out of range, which only the quality gate catches."""
    if Path(media_path).stat().st_size == 0:
        return CallResult(CallManifest(call_id=call_id, status="quarantined", reason="empty file (0 bytes)"))
    tables = make_call_tables(call_id, call_date, duration_s=60.0, seed=len(call_id))
    if call_id.startswith("invalid"):
        tables["speaker_affect"] = set_values(tables["speaker_affect"], "valence", {0: 2.5})
    manifest = CallManifest(call_id=call_id, status="ok", sha256="a" * 64, duration_s=60.0, schema_version=SCHEMA_VERSION)
    return CallResult(manifest, tables)


def _upload(settings, day: str, name: str, data: bytes, metadata: dict | None = None) -> str:
    client = object_store.s3_client(settings.s3)
    key = f"{settings.s3.raw_prefix}{day}/{name}"
    object_store.put_bytes(client, settings.s3.raw_bucket, key, data)
    if metadata is not None:
        stem = name.rsplit(".", 1)[0]
        object_store.put_bytes(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{day}/{stem}.json", json.dumps(metadata).encode())
    return key


def _objects(settings, bucket: str) -> dict[str, str]:
    client = object_store.s3_client(settings.s3)
    return {o.key: o.etag for o in object_store.list_objects(client, bucket)}


def _states(dag_run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}


def test_dag_files_parse_fast_without_heavy_imports(airflow_home):
    """A fresh interpreter parses dags/ as the DAG processor does: no errors, < 2 s a file, nothing heavy."""
    probe = f"""
import json, sys, time
import airflow
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
bag = DagBag(dag_folder={str(DAGS_FOLDER)!r})
print(json.dumps({{
    "errors": bag.import_errors,
    "seconds": {{s.file: s.duration.total_seconds() for s in bag.dagbag_stats}},
    "dags": sorted(bag.dag_ids),
    "heavy": sorted(m for m in set(sys.modules) - before if m.split(".")[0] in {HEAVY!r}),
}}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert set(result["dags"]) == DAG_IDS
    assert set(result["seconds"]) == {f"{d}.py" for d in DAG_IDS}
    assert all(s < 2.0 for s in result["seconds"].values()), result["seconds"]
    assert result["heavy"] == []


def test_dag_wiring(dagbag):
    assert dagbag.import_errors == {}
    nightly, landing = dagbag.dags["callaffect_nightly"], dagbag.dags["callaffect_landing"]
    assert {t.task_id for t in nightly.tasks} == {
        "discover", "analyze_batch", "quality_gate", "build_marts", "trend_report", "report", "check_run",
    }
    # The gate, marts and report run when the mapped batch is skipped (nothing pending) or a
    # batch failed: the calls that did commit are gated and loaded all the same.
    for task_id in ("quality_gate", "build_marts", "trend_report", "report", "check_run"):
        assert nightly.task_dict[task_id].trigger_rule == "all_done", task_id
    assert nightly.task_dict["check_run"].upstream_task_ids == {"report", "trend_report"}
    assert nightly.task_dict["quality_gate"].upstream_task_ids == {"analyze_batch"}
    assert nightly.task_dict["build_marts"].upstream_task_ids == {"quality_gate"}
    assert nightly.task_dict["trend_report"].upstream_task_ids == {"build_marts"}
    assert "trend_report" in nightly.task_dict["report"].upstream_task_ids
    assert nightly.catchup is False and landing.catchup is False
    # By default the heavy work stays in the nightly window: cron only.
    assert nightly.timetable.expression == "0 2 * * *"
    # Without a queue: the Amazon provider's S3 sensor, holding no worker slot between pokes.
    from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

    sensor = landing.task_dict["wait_for_recordings"]
    assert isinstance(sensor, S3KeySensor) and sensor.mode == "reschedule" and sensor.soft_fail
    assert landing.timetable.expression == "*/30 * * * *"


def test_nightly_can_also_start_when_landing_announces(airflow_home, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CALLAFFECT_SCHEDULE__START_ON_LANDING", "true")
    monkeypatch.setenv("CALLAFFECT_SCHEDULE__NIGHTLY_CRON", "30 1 * * *")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    nightly, landing = bag.dags["callaffect_nightly"], bag.dags["callaffect_landing"]
    # Landing announces exactly the asset the nightly DAG is also scheduled on (besides its cron).
    (announced,) = landing.task_dict["register"].outlets
    assert [a.uri for a in nightly.timetable.asset_condition.objects] == [announced.uri]
    assert nightly.timetable.timetable.expression == "30 1 * * *"


def test_nightly_dag_commits_gates_and_loads_each_call_once(settings, ray_local, monkeypatch):
    settings = use_settings(monkeypatch, dataclasses.replace(settings, ray=RaySettings(local_num_cpus=2, max_calls_per_batch=2)))
    monkeypatch.setattr("pipeline.airflow_tasks.ANALYZE_FN", fake_analyze)
    meta = {"roles": {"SPEAKER_00": "agent", "SPEAKER_01": "customer"}}
    _upload(settings, DAY, "call-a.wav", b"RIFF pretend audio a", meta)
    _upload(settings, DAY, "call-b.flac", b"fLaC pretend audio b", meta)
    _upload(settings, DAY, "empty.wav", b"")
    _upload(settings, DAY, "invalid-c.wav", b"RIFF pretend audio c", meta)

    run = run_dag("callaffect_nightly")

    assert run.state == "success"
    states = _states(run)
    # Four pending calls in batches of two: two mapped task instances.
    assert states[("analyze_batch", 0)] == states[("analyze_batch", 1)] == "success"
    assert ("analyze_batch", 2) not in states
    manifests = {m.call_id: m for _, m in CuratedStore(settings).manifests()}
    assert {c: m.status for c, m in manifests.items()} == {
        "call-a": "ok", "call-b": "ok", "empty": "quarantined", "invalid-c": "quarantined",
    }
    assert manifests["empty"].reason == "empty file (0 bytes)"
    assert manifests["invalid-c"].reason.startswith("quality gate: speaker_affect.valence: 1 values outside [-1, 1]")
    assert all(manifests[c].quality["passed"] for c in ("call-a", "call-b"))
    with duckdb.connect(settings.marts.duckdb_path, read_only=True) as con:
        assert con.execute("select call_id from dim_calls order by 1").fetchall() == [("call-a",), ("call-b",)]
        assert con.execute("select count(*) from mart_qa_flags").fetchone()[0] == 2

    report = task_result(run, "report")
    assert sorted(report["processed"]) == ["call-a", "call-b"]
    assert report["quarantined"] == {"empty": "empty file (0 bytes)", "invalid-c": manifests["invalid-c"].reason}
    assert report["gate"] == {"checked": 3, "passed": 2, "failed": {"invalid-c": manifests["invalid-c"].quality["failures"]}}
    assert {f["call_id"] for f in report["flags"]} == {"call-a", "call-b"} and report["flag_count"] == 2
    assert all(f["role"] == "customer" and 0 <= f["score"] <= 1 and f["end_s"] > f["start_s"] for f in report["flags"])
    by_call = {c["call_id"]: c for c in report["calls"]}
    assert by_call["call-a"]["num_speakers"] == 2
    assert {s["role"] for s in by_call["call-a"]["speakers"]} == {"agent", "customer"}
    trend_page = CuratedStore(settings).read_bytes(task_result(run, "trend_report")["key"])
    assert trend_page.startswith(b"<!doctype html>") and b"Flags per agent and per queue" in trend_page

    curated = _objects(settings, settings.s3.curated_bucket)
    again = run_dag("callaffect_nightly")

    assert again.state == "success"
    # Nothing pending: the mapped batch is skipped, the gate and marts still run.
    assert _states(again)[("analyze_batch", -1)] == "skipped"
    assert _states(again)[("build_marts", -1)] == "success"
    assert _objects(settings, settings.s3.curated_bucket) == curated  # not one object rewritten
    assert task_result(again, "report")["calls"] == []
    with duckdb.connect(settings.marts.duckdb_path, read_only=True) as con:
        assert con.execute("select count(*), count(distinct call_id) from dim_calls").fetchone() == (2, 2)
        assert con.execute("select count(*) from fct_speaker_affect").fetchone()[0] == sum(
            make_call_tables(c, DAY, duration_s=60.0, seed=len(c))["speaker_affect"].num_rows for c in ("call-a", "call-b")
        )


def poison_analyze(media_path, call_id, **kwargs) -> CallResult:
    """fake_analyze, except that a poison* call kills its worker every time."""
    if call_id.startswith("poison"):
        import os

        os._exit(3)
    return fake_analyze(media_path, call_id, **kwargs)


def test_a_poison_call_fails_the_run_but_never_the_other_calls(settings, ray_local, monkeypatch):
    """A call whose worker dies every time, and metadata nested 100,000 deep: the good calls are
    still gated, loaded and reported; the run fails (check_run) while the poison call is
    retried; after ray.max_call_failures runs it is quarantined and the night is green again."""
    ray = RaySettings(local_num_cpus=2, max_calls_per_batch=2, max_call_failures=2)
    settings = use_settings(monkeypatch, dataclasses.replace(settings, ray=ray))
    monkeypatch.setattr("pipeline.airflow_tasks.ANALYZE_FN", poison_analyze)
    _upload(settings, DAY, "good-a.wav", b"RIFF pretend audio a", {"min_speakers": 2})
    _upload(settings, DAY, "poison-1.wav", b"RIFF pretend audio p")
    _upload(settings, DAY, "good-b.wav", b"RIFF pretend audio b")
    client = object_store.s3_client(settings.s3)
    object_store.put_bytes(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{DAY}/deep-1.wav", b"RIFF pretend audio d")
    object_store.put_bytes(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{DAY}/deep-1.json", b"[" * 30_000 + b"]" * 30_000)

    first = run_dag("callaffect_nightly")

    states = _states(first)
    assert first.state == "failed" and states[("check_run", -1)] == "failed"
    for task_id in ("quality_gate", "build_marts", "report"):
        assert states[(task_id, -1)] == "success", task_id
    with duckdb.connect(settings.marts.duckdb_path, read_only=True) as con:
        assert con.execute("select call_id from dim_calls order by 1").fetchall() == [("good-a",), ("good-b",)]
    report = task_result(first, "report")
    assert sorted(report["processed"]) == ["good-a", "good-b"]
    assert report["quarantined"]["deep-1"] == "metadata nested deeper than 6 levels"
    assert list(report["not_committed"]) == ["poison-1"] and "WorkerCrashedError" in report["not_committed"]["poison-1"]

    second = run_dag("callaffect_nightly")

    assert second.state == "success"
    [poison] = [m for _, m in CuratedStore(settings).manifests() if m.call_id == "poison-1"]
    assert poison.status == "quarantined" and poison.reason.startswith("failed 2 times: WorkerCrashedError")
    assert task_result(second, "report")["quarantined"] == {"poison-1": poison.reason}


def test_retention_dag_deletes_old_processed_media_and_logs_it(settings, monkeypatch):
    settings = use_settings(monkeypatch, dataclasses.replace(settings, retention=RetentionSettings(raw_max_age_days=30)))
    # Past the raw limit, within every other (older calls would lose their text, affect windows, ...).
    old_day = date.fromordinal(date.today().toordinal() - 40).isoformat()
    old_done = _upload(settings, old_day, "old-done.wav", b"RIFF old audio", {"consent": {}})
    old_pending = _upload(settings, old_day, "old-pending.wav", b"RIFF not analysed yet")
    recent = _upload(settings, DAY, "recent.wav", b"RIFF recent audio")
    for key in (old_done, recent):
        rec = recording_from_dict({"key": key, "call_id": Path(key).stem, "call_date": key.split("/")[-2]})
        process_recording(rec, settings, fake_analyze)
    gate_committed_calls(settings)  # retention acts only on calls that passed the gate

    run = run_dag("callaffect_retention")

    assert run.state == "success"
    raw = _objects(settings, settings.s3.raw_bucket)
    assert old_done not in raw and old_done.replace(".wav", ".json") not in raw
    assert old_pending in raw and recent in raw  # never an unprocessed call; nothing recent
    report = task_result(run, "apply_retention")
    assert "call_id" not in json.dumps(report) and "old-done" not in json.dumps(report)  # counts only in XCom
    assert report["counts"] == {"raw_media": 2, "snippets": 0, "utterance_text": 0, "affect_windows": 0, "aggregates": 0}
    client = object_store.s3_client(settings.s3)
    log_lines = object_store.get_bytes(client, settings.s3.curated_bucket, report["log_key"]).decode().splitlines()
    assert {json.loads(line)["key"] for line in log_lines} == {old_done, old_done.replace(".wav", ".json")}


def _landing_events(run_id: str) -> list[tuple[str, dict]]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run_id)).all()
        return [(e.asset.uri, e.extra) for e in events]


def test_landing_dag_registers_pending_recordings_once_and_emits_the_asset_event(task_env):
    """Without a queue: the provider's S3 sensor sees the new object, a listing finds it pending,
    it is announced once; the next run finds nothing new and ends skipped."""
    import logging

    key = _upload(task_env, DAY, "new-call.wav", b"RIFF new audio", {"consent": {}})
    botocore = logging.getLogger("botocore")
    botocore.setLevel(logging.DEBUG)  # a debugging operator's setting: it would log request headers

    run = run_dag("callaffect_landing")

    assert run.state == "success"
    assert botocore.level == logging.INFO  # the task body capped it: no credentials in task logs
    assert _states(run) == {("wait_for_recordings", -1): "success", ("register", -1): "success"}
    assert _landing_events(run.run_id) == [
        (f"s3://{task_env.s3.raw_bucket}/recordings", {"count": 1, "call_ids": ["new-call"]})
    ]
    client = object_store.s3_client(task_env.s3)
    record = json.loads(object_store.get_bytes(
        client, task_env.s3.curated_bucket, f"{task_env.s3.ops_prefix}landing/date={DAY}/call_id=new-call.json"))
    assert record["key"] == key

    # The same recording uploaded again (a retried upload): the sensor sees a new object, the
    # listing the same pending call, already announced: nothing starts twice.
    _upload(task_env, DAY, "new-call.wav", b"RIFF new audio")
    again = run_dag("callaffect_landing")
    assert _states(again) == {("wait_for_recordings", -1): "success", ("register", -1): "skipped"}
    assert _landing_events(again.run_id) == []


def test_landing_sensor_check_waits_for_objects_newer_than_the_last_successful_run():
    from datetime import datetime, timezone

    from pipeline.airflow_tasks import landed_since_previous_run

    last = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
    files = [{"Key": "recordings/2026-11-01/a.wav", "LastModified": datetime(2026, 11, 1, 11, tzinfo=timezone.utc)}]
    assert landed_since_previous_run(files, prev_start_date_success=None) is True  # never ran: anything counts
    assert landed_since_previous_run(files, prev_start_date_success=last) is False
    files.append({"Key": "recordings/2026-11-01/b.wav", "LastModified": datetime(2026, 11, 1, 12, 5, tzinfo=timezone.utc)})
    assert landed_since_previous_run(files, prev_start_date_success=last) is True
    # Put 0.4 s after a run began at 12:07:00.6, S3 says 12:07:01 or 12:07:00 (whole seconds): it counts.
    same_second = [{"Key": "recordings/2026-11-01/c.wav", "LastModified": datetime(2026, 11, 1, 12, 7, tzinfo=timezone.utc)}]
    assert landed_since_previous_run(same_second, prev_start_date_success=last.replace(minute=7, microsecond=600_000))
    assert landed_since_previous_run([], prev_start_date_success=None) is False
