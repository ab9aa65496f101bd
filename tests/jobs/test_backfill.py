"""Backfill and reprocessing by date range: selection (pending, reprocess, stale), history of
replaced manifests, calls whose raw media is gone, the CLI's dry run and progress bar, the
nightly DAG's run parameters, and marts builds that race a reprocessing (never old and new rows
of one call together). Real S3 (moto's server), real Ray and DuckDB; the analysis is a stand-in."""

from __future__ import annotations

import dataclasses
import functools
import json
import re

import duckdb
import pytest
from airflow_env import use_settings
from factories import make_call_tables
from stack_helpers import put_calls

from pipeline import cli
from pipeline.call.exports import CallResult
from pipeline.jobs import marts as marts_job
from pipeline.jobs.batch import (
    RAW_MEDIA_GONE, DateRange, expected_versions, process_recording, run_batch, select_recordings,
)
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.manifest import CallManifest
from pipeline.schemas import SCHEMA_VERSION
from pipeline.storage import object_store
from pipeline.storage.curated import COMMIT_ID_KEY, CuratedStore, call_folder, history_key
from pipeline.storage.keys import classify_raw_key

D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"
FACTS = ("dim_calls", "fct_speaker_turns", "fct_utterances", "fct_speaker_affect", "fct_qa_flags", "fct_stage_metrics")


def seeded_analyze(media_path, call_id, *, settings, call_date, seed: int = 1, stale: dict | None = None,
                   fingerprint: str | None = None, **_) -> CallResult:
    """Valid tables whose values depend on ``seed`` (so two runs' rows differ), with the versions
    and fingerprint the current settings give, except where ``stale``/``fingerprint`` say otherwise."""
    tables = make_call_tables(call_id, call_date, duration_s=60.0 + seed, seed=seed)
    manifest = CallManifest(call_id=call_id, status="ok", sha256="e" * 64, duration_s=60.0 + seed,
                            schema_version=SCHEMA_VERSION, settings_fingerprint=fingerprint or settings.fingerprint(),
                            versions=expected_versions(settings) | (stale or {}))
    return CallResult(manifest, tables)


OLD_RUN = functools.partial(seeded_analyze, seed=1)
NEW_RUN = functools.partial(seeded_analyze, seed=2)


def _rec(settings, call_id, day):
    return classify_raw_key(f"{settings.s3.raw_prefix}{day}/{call_id}.wav", settings.s3.raw_prefix)


def _commit(settings, call_id, day, analyze=OLD_RUN):
    put_calls(settings, [call_id], day)
    manifest = process_recording(_rec(settings, call_id, day), settings, analyze, reprocess=True).manifest
    assert manifest.status == "ok"
    return manifest


def _rows(con, table, call_id):
    return sorted(map(repr, con.execute(f"select columns(*)::varchar from {table} where call_id = ?", [call_id]).fetchall()))


def _snapshot(path, call_id):
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: _rows(con, t, call_id) for t in FACTS}


def test_date_range_parses_a_day_or_a_range():
    assert DateRange.parse("2026-11-01..2026-11-07").days()[-1] == "2026-11-07"
    assert DateRange.parse(D2).days() == [D2] and D2 in DateRange.parse(D2) and D1 not in DateRange.parse(D2)
    for bad in ("2026-11-07..2026-11-01", "2026-13-01", "yesterday", "2026-11-1"):
        with pytest.raises(ValueError):
            DateRange.parse(bad)


def test_dates_limit_discovery_and_reprocess_replaces_outputs_keeping_history(settings, ray_local):
    _commit(settings, "done-1", D1)
    first = _commit(settings, "done-2", D2)
    put_calls(settings, ["new-1"], D1)
    put_calls(settings, ["new-2"], D2)
    put_calls(settings, ["new-3"], D3)

    pending = select_recordings(settings, DateRange.parse(D2), "pending")
    assert [r.call_id for r, _ in pending.selected] == ["new-2"]
    report = run_batch(settings, dates=DateRange.parse(f"{D2}..{D3}"), analyze_fn=NEW_RUN)
    assert sorted(report.ok) == ["new-2", "new-3"] and report.skipped == []
    store = CuratedStore(settings)
    assert store.read_manifest(D1, "new-1") is None  # outside the dates: still pending

    old_turns = store.read_bytes(f"speaker_turns/date={D2}/call_id=done-2/part-0.parquet")
    report = run_batch(settings, dates=DateRange.parse(D2), mode="reprocess", analyze_fn=NEW_RUN)
    assert sorted(report.ok) == ["done-2", "new-2"]
    assert report.selected["done-2"] == "reprocess (ok)"
    now = store.read_manifest(D2, "done-2")
    assert now.commit_id != first.commit_id and now.duration_s == 62.0
    assert store.read_bytes(f"speaker_turns/date={D2}/call_id=done-2/part-0.parquet") != old_turns
    (kept,) = store.history(D2, "done-2")
    assert (kept.commit_id, kept.duration_s, kept.created_at) == (first.commit_id, 61.0, first.created_at)
    # History lies in the call's manifest folder, which erasure deletes whole; it is no commit.
    key = history_key("", D2, "done-2", first.created_at, first.commit_id)
    assert key.startswith(call_folder("", "_manifests", D2, "done-2")) and store.read_bytes(key) is not None
    assert (D2, "done-2") in store.committed_calls() and len(store.manifests([D2])) == 2
    # Every table file of the new commit names it in its footer.
    import io

    import pyarrow.parquet as pq

    footer = pq.ParquetFile(io.BytesIO(store.read_bytes(f"utterances/date={D2}/call_id=done-2/part-0.parquet")))
    assert footer.schema_arrow.metadata[COMMIT_ID_KEY.encode()].decode() == now.commit_id
    assert store.read_manifest(D1, "done-1").commit_id is not None and store.history(D1, "done-1") == []


def test_stale_selects_exactly_the_stale_calls_and_reports_deleted_media(settings, ray_local, monkeypatch, capsys):
    _commit(settings, "current", D1)
    _commit(settings, "old-asr", D1, functools.partial(seeded_analyze, stale={"transcription": "tiny.en@2025"}))
    _commit(settings, "old-rule", D2, functools.partial(seeded_analyze, stale={"flags": "frustration-v0"}))
    _commit(settings, "old-settings", D2, functools.partial(seeded_analyze, fingerprint="0123456789ab"))
    _commit(settings, "gone", D2, functools.partial(seeded_analyze, stale={"diarization": "resemblyzer==0.0.1"}))
    _commit(settings, "other-day", D3, functools.partial(seeded_analyze, stale={"transcription": "x"}))
    client = object_store.s3_client(settings.s3)
    object_store.delete_object(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{D2}/gone.wav")  # retention

    selection = select_recordings(settings, DateRange.parse(f"{D1}..{D2}"), "stale")
    why = {r.call_id: w for r, w in selection.selected}
    assert sorted(why) == ["old-asr", "old-rule", "old-settings"]
    assert selection.current == ["current"]
    assert why["old-asr"].startswith("stale: transcription model version tiny.en@2025 -> ")
    assert why["old-rule"] == f"stale: flags rule version frustration-v0 -> {expected_versions(settings)['flags']}"
    assert why["old-settings"] == f"stale: settings fingerprint 0123456789ab -> {settings.fingerprint()}"
    assert selection.not_reprocessable["gone"].startswith(RAW_MEDIA_GONE + " (stale: diarization model version")

    # The CLI's dry run lists the same calls and reasons, and changes nothing.
    use_settings(monkeypatch, settings)
    before = {o.key: o.etag for o in object_store.list_objects(client, settings.s3.curated_bucket)}
    assert cli.main(["batch", "--dates", f"{D1}..{D2}", "--stale", "--dry-run"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    listed = json.loads(out)
    assert {s["call_id"]: s["why"] for s in listed["selected"]} == why
    assert f"{D2} old-rule: {why['old-rule']}" in err and f"gone: {RAW_MEDIA_GONE}" in err
    assert {o.key: o.etag for o in object_store.list_objects(client, settings.s3.curated_bucket)} == before

    report = run_batch(settings, dates=DateRange.parse(f"{D1}..{D2}"), mode="stale", analyze_fn=NEW_RUN)
    assert sorted(report.ok) == ["old-asr", "old-rule", "old-settings"]
    assert set(report.not_reprocessable) == {"gone"}
    assert select_recordings(settings, DateRange.parse(f"{D1}..{D2}"), "stale").selected == []
    assert [m.versions["transcription"] for m in CuratedStore(settings).history(D1, "old-asr")] == ["tiny.en@2025"]


def test_cli_progress_bar_counts_outcomes(settings, ray_local, monkeypatch, capsys):
    # The CLI runs the real analysis: these two are not media, so both end quarantined.
    put_calls(settings, ["p-1", "p-2"], D1)
    put_calls(settings, ["p-3"], D2)
    use_settings(monkeypatch, settings)
    assert cli.main(["batch", "--dates", D1, "--progress"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert sorted(json.loads(out)["quarantined"]) == ["p-1", "p-2"]
    assert "2/2" in err and "ok=0" in err and "quarantined=2" in err and "failed=0" in err
    bar = re.findall(r"batch:[^\]]*\]", err)  # each redraw of the bar (Ray's worker logs interleave)
    assert bar and not any("p-" in line for line in bar)  # no call ids on the bar
    assert cli.main(["batch", "--reprocess"]) == cli.EXIT_ERROR  # a reprocess needs dates


def _build(settings, out):
    return marts_job.build_marts(settings, out_path=out)


def test_marts_build_between_table_writes_and_manifest_never_mixes_runs(settings, tmp_path, monkeypatch):
    _commit(settings, "redo", D1)
    _commit(settings, "bystander", D1)
    gate_committed_calls(settings)
    _build(settings, tmp_path / "old.duckdb")
    old, bystander = _snapshot(tmp_path / "old.duckdb", "redo"), _snapshot(tmp_path / "old.duckdb", "bystander")
    assert all(old[t] for t in ("dim_calls", "fct_speaker_turns", "fct_qa_flags"))

    # Reprocess "redo", building the marts after its first table file and again just before its
    # manifest: the old manifest is still the commit, some or all files are new.
    store_cls = CuratedStore
    seen = {}
    real_write = store_cls.write_bytes

    def write_bytes(self, key, data, content_type="application/octet-stream"):
        if key.endswith("_manifest.json") and "call_id=redo/" in key and "mid-last" not in seen:
            seen["mid-last"] = _build(settings, tmp_path / "mid-last.duckdb")
        real_write(self, key, data, content_type)
        if key.endswith(".parquet") and "call_id=redo/" in key and "mid-first" not in seen:
            seen["mid-first"] = _build(settings, tmp_path / "mid-first.duckdb")

    monkeypatch.setattr(store_cls, "write_bytes", write_bytes)
    process_recording(_rec(settings, "redo", D1), settings, NEW_RUN, reprocess=True)
    monkeypatch.undo()
    gate_committed_calls(settings)
    _build(settings, tmp_path / "new.duckdb")
    new = _snapshot(tmp_path / "new.duckdb", "redo")
    assert all(new[t] != old[t] for t in ("dim_calls", "fct_speaker_turns"))  # the runs differ

    empty = {t: [] for t in FACTS}
    for name in ("mid-first", "mid-last"):
        mid = _snapshot(tmp_path / f"{name}.duckdb", "redo")
        assert mid in (old, new, empty), name  # whole, never part old and part new
        assert mid == empty  # files of another commit than the manifest: left out whole
        assert _snapshot(tmp_path / f"{name}.duckdb", "bystander") == bystander
        with duckdb.connect(str(tmp_path / f"{name}.duckdb"), read_only=True) as con:
            loaded, reason = con.execute("select loaded, reason from fct_call_status where call_id = 'redo'").fetchone()
        assert not loaded and reason.startswith("commit in progress")
        assert seen[name].calls_loaded == 1


def test_a_call_recommitted_while_the_build_reads_it_makes_the_build_start_over(settings, tmp_path, monkeypatch):
    _commit(settings, "racy", D1)
    gate_committed_calls(settings)
    _build(settings, tmp_path / "old.duckdb")
    old = _snapshot(tmp_path / "old.duckdb", "racy")
    attempts = []
    real_render = marts_job._render

    def render(sql, root, sources, file_commits=""):
        # The first attempt's staging is done (old manifest, old commit ids): now the call is
        # reprocessed whole, and the facts would read the new files.
        if "create or replace table dim_calls" in sql:
            attempts.append(1)
            if len(attempts) == 1:
                process_recording(_rec(settings, "racy", D1), settings, NEW_RUN, reprocess=True)
        return real_render(sql, root, sources, file_commits)

    monkeypatch.setattr(marts_job, "_render", render)
    report = _build(settings, tmp_path / "raced.duckdb")
    assert len(attempts) == 2
    raced = _snapshot(tmp_path / "raced.duckdb", "racy")
    assert raced != old and raced == {t: [] for t in FACTS}  # new commit, not gated yet: out
    assert report.calls_loaded == 0


def test_nightly_dag_takes_dates_and_mode_as_run_parameters(settings, ray_local, monkeypatch, dagbag):
    settings = use_settings(monkeypatch, settings)
    monkeypatch.setattr("pipeline.airflow_tasks.ANALYZE_FN", NEW_RUN)
    first = _commit(settings, "kept", D1)
    _commit(settings, "redo", D2)
    put_calls(settings, ["waiting"], D1)
    from airflow.dag_processing.dagbag import DagBag

    from pipeline.devtools.demo import DAGS_FOLDER, task_result

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["callaffect_nightly"]
    assert dag.params["mode"] == "pending" and dag.params["dates"] is None
    run = dag.test(run_conf={"dates": D2, "mode": "reprocess"})
    assert run.state == "success"
    store = CuratedStore(settings)
    assert store.read_manifest(D1, "waiting") is None  # pending, but not of the dates
    assert store.read_manifest(D1, "kept").commit_id == first.commit_id
    assert len(store.history(D2, "redo")) == 1 and store.read_manifest(D2, "redo").quality["passed"]
    assert task_result(run, "report")["processed"] == ["redo"]

    # The nightly default: every pending recording (parsed afresh: dag.test() keeps the last
    # run_conf in the DAG object's params, which a scheduler's run never sees).
    run = DagBag(dag_folder=str(DAGS_FOLDER)).dags["callaffect_nightly"].test()
    assert run.state == "success"
    assert store.read_manifest(D1, "waiting").status == "ok" and len(store.history(D2, "redo")) == 1
