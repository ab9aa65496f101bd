"""The fault suite's slow half: a whole batch, the gate and the marts under injected S3 throttling."""

from __future__ import annotations

import dataclasses

import duckdb
from s3_fault_proxy import FaultProxy
from stack_helpers import commit_valid_call, put_calls, tables_analyze

from pipeline.jobs.batch import run_batch
from pipeline.jobs.marts import build_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.storage import object_store


def _marts_rows(path: str) -> dict:
    with duckdb.connect(path, read_only=True) as con:
        return {
            "calls": con.execute("select call_id, call_date, duration_s from dim_calls order by all").fetchall(),
            "affect": con.execute("select call_id, speaker, start_s, valence, arousal from fct_speaker_affect order by all").fetchall(),
            "flags": con.execute("select call_id, speaker, start_s, score from mart_qa_flags order by all").fetchall(),
            "utterances": con.execute("select count(*) from fct_utterances").fetchone(),
        }


def test_batch_gate_and_marts_under_20_percent_slowdown_match_a_fault_free_run(settings, ray_local, local_s3, tmp_path):
    calls = [f"slow-{i}" for i in range(6)]
    put_calls(settings, calls)
    clean = run_batch(settings, analyze_fn=tables_analyze)
    gate_committed_calls(settings)
    clean_rows = _marts_rows(build_marts(settings).path)

    import uuid

    s3 = dataclasses.replace(settings.s3, raw_bucket=f"raw-{uuid.uuid4().hex[:8]}", curated_bucket=f"cur-{uuid.uuid4().hex[:8]}")
    client = object_store.s3_client(s3)
    object_store.ensure_bucket(client, s3.raw_bucket)
    object_store.ensure_bucket(client, s3.curated_bucket)
    with FaultProxy(local_s3.endpoint_url, error_rate=0.2, seed=7) as proxy:
        faulty = dataclasses.replace(
            settings, s3=dataclasses.replace(s3, endpoint_url=proxy.endpoint_url),
            marts=dataclasses.replace(settings.marts, duckdb_path=str(tmp_path / "faulty" / "m.duckdb")),
        )
        put_calls(faulty, calls)
        throttled = run_batch(faulty, analyze_fn=tables_analyze)
        gated = gate_committed_calls(faulty)
        faulty_rows = _marts_rows(build_marts(faulty).path)
        counts = dict(proxy.counts)

    assert sorted(throttled.ok) == sorted(clean.ok) == calls and throttled.failed == {}
    assert all(r.passed for _, r in gated) and len(gated) == len(calls)
    assert faulty_rows == clean_rows and clean_rows["affect"]
    assert counts["error"] > 0.15 * (counts["error"] + counts["forward"])  # the faults really happened


def test_marts_survive_throttling_that_duckdbs_default_retries_do_not(settings, local_s3, tmp_path, monkeypatch):
    """The marts build alone at 35 % SlowDown: passes with the configured httpfs retries, and
    the same build with DuckDB's defaults fails (so this test can tell)."""
    import pipeline.jobs.marts as marts

    # Enough calls that a build makes many S3 requests: with DuckDB's 3 retries (its default)
    # each fails for good about 1.5 % of the time at this rate, so a default build rarely survives.
    for i in range(12):
        commit_valid_call(settings, f"thr-{i}")
    gate_committed_calls(settings)
    with FaultProxy(local_s3.endpoint_url, error_rate=0.35, seed=3) as proxy:
        faulty = dataclasses.replace(settings, s3=dataclasses.replace(settings.s3, endpoint_url=proxy.endpoint_url))
        assert build_marts(faulty).calls_loaded == 12
        monkeypatch.setattr(marts, "HTTP_RETRY_SETTINGS", {})
        failures = 0
        for _ in range(3):
            try:
                build_marts(faulty, out_path=tmp_path / "default.duckdb")
            except marts.MartsBuildError as exc:
                assert "503" in str(exc)
                failures += 1
    assert failures >= 2
