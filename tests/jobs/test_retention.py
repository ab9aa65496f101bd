"""pipeline.jobs.retention against moto's real S3 server: each kind of data goes at its age (raw
media only of processed calls; derived data only of gated or quarantined calls), and is logged."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow_env import use_settings
from factories import make_call_tables, set_values

from pipeline import cli
from pipeline.call.exports import CallResult
from pipeline.clock import utc_now
from pipeline.jobs.batch import discover_pending, process_recording
from pipeline.jobs.marts import build_marts, open_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.jobs.retention import AFFECT_TABLES, DATA_KINDS, run_retention
from pipeline.manifest import CallManifest
from pipeline.schemas import TABLES
from pipeline.settings import RetentionSettings, load_settings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore, snippet_key, table_key
from pipeline.storage.keys import failures_key, landing_key
from pipeline.storage.reviews import Assignment, Note, ReviewStore, Verdict

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


# --- one age limit per kind of data ------------------------------------------------------------

TODAY = NOW.date()


def _days_ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def _commit(settings, call_id: str, day: str, *, gated: bool = True, quarantined: str | None = None,
            reviews: bool = True) -> None:
    """One call as the batch leaves it: tables (with face and coaching affect), a snippet per flag,
    the manifest (gated, ungated or quarantined), and a reviewer's verdict with a comment and a note."""
    tables = make_call_tables(call_id, day, video=True, seed=len(call_id))
    flags = tables["qa_flags"].to_pylist()
    manifest = CallManifest(call_id, call_date=day, sha256=f"sha-of-{call_id}",
                            quality={"passed": True} if gated or quarantined else None)
    if quarantined:
        manifest.quarantine(quarantined)  # as the gate leaves it: the tables stay, never loaded
    CuratedStore(settings).commit(manifest, tables, {f["flag_id"]: b"OggS review audio" for f in flags})
    if reviews:
        store = ReviewStore(settings)
        store.add_verdict(Verdict.new(flags[0]["flag_id"], call_id, day, flags[0]["rule_version"], "rita",
                                      "confirmed", "she said: I am really frustrated"))
        store.add_note(Note.new(call_id, day, 1, "rita", "customer quotes the account number"))
        store.add_assignment(Assignment.new(flags[0]["flag_id"], call_id, "rita", "lena"))


def _table(settings, table: str, day: str, call_id: str) -> pa.Table | None:
    data = CuratedStore(settings).read_bytes(table_key("", table, day, call_id))
    return pq.read_table(pa.BufferReader(data)) if data is not None else None


def _call_keys(settings, day: str, call_id: str) -> set[str]:
    return {k for k in _curated(settings) if f"date={day}/call_id={call_id}/" in k or f"call_id={call_id}/" in k}


CALLS = {  # call id -> age in days on NOW
    "text-old": 181, "affect-old": 366, "agg-old": 731, "agg-raw": 731, "agg-ungated": 731, "agg-quarantined": 731,
    "recent": 10,
}


def _setup_ages(settings) -> dict[str, str]:
    days = {call_id: _days_ago(age) for call_id, age in CALLS.items()}
    for call_id, day in days.items():
        _commit(settings, call_id, day, gated=call_id != "agg-ungated",
                quarantined="quality gate: speaker_affect.valence out of range" if call_id == "agg-quarantined" else None)
    # Reprocessed once: the replaced manifest is kept in the call's history, and goes with the call.
    _commit(settings, "agg-old", days["agg-old"], reviews=False)
    assert any("/history/" in k for k in _call_keys(settings, days["agg-old"], "agg-old"))
    client = object_store.s3_client(settings.s3)
    # Raw media still there (re-uploaded after processing): its call must keep its manifest.
    object_store.put_bytes(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{days['agg-raw']}/agg-raw.wav", b"media")
    object_store.put_bytes(client, settings.s3.curated_bucket,
                           failures_key(settings.s3.ops_prefix, days["agg-old"], "agg-old"), b'{"runs": []}')
    object_store.put_bytes(client, settings.s3.curated_bucket,
                           landing_key(settings.s3.ops_prefix, days["agg-old"], "agg-old"), b'{"key": "x"}')
    return days


def test_every_kind_goes_at_its_age_logged_once_each_and_nothing_else_changes(settings):
    days = _setup_ages(settings)
    before = _curated(settings)
    utterances_before = {c: _table(settings, "utterances", d, c) for c, d in days.items()}

    dry = run_retention(dataclasses.replace(settings, retention=RetentionSettings(dry_run=True)), now=NOW)
    assert {k: v for k, v in _curated(settings).items() if k != dry.log_key} == before
    assert all(r["dry_run"] for r in dry.deleted)

    report = run_retention(settings, now=NOW)
    after = _curated(settings)
    ops = settings.s3.ops_prefix
    changed = {k for k in before if after.get(k) != before[k]}
    # One record per object deleted or rewritten, and nothing else changed; the dry run listed the same.
    assert sorted(r["key"] for r in report.deleted) == sorted(changed)
    assert len(report.deleted) == len(changed)
    assert [(r["key"], r["action"]) for r in dry.deleted] == [(r["key"], r["action"]) for r in report.deleted]
    assert {k for k in after if k not in before} == {report.log_key, dry.log_key}
    assert report.counts == dict(Counter(r["data_kind"] for r in report.deleted)) | {
        k: 0 for k in DATA_KINDS if k not in {r["data_kind"] for r in report.deleted}}
    assert all(r["age_days"] == CALLS[r["call_id"]] and r["call_date"] == days[r["call_id"]] for r in report.deleted)
    lines = object_store.get_bytes(object_store.s3_client(settings.s3), settings.s3.curated_bucket, report.log_key)
    assert [json.loads(line) for line in lines.decode().splitlines()] == report.deleted

    by_call = {}
    for r in report.deleted:
        by_call.setdefault(r["call_id"], set()).add((r["data_kind"], r["kind"], r["action"]))
    # Recent: untouched. A call not gated yet keeps its tables and manifest as written (the gate
    # still reads them); its snippets and reviewers' words go by date alone, which nothing else reads.
    assert "recent" not in by_call and _call_keys(settings, days["recent"], "recent")
    assert by_call["agg-ungated"] == {("snippets", "snippet", "delete"), ("utterance_text", "review_note", "delete"),
                                      ("utterance_text", "review_verdict", "rewrite")}
    assert all(after[k] == before[k] for k in _call_keys(settings, days["agg-ungated"], "agg-ungated")
               if not k.startswith(("snippets/", "_reviews/")))
    assert {k["data_kind"] for k in report.kept if k["call_id"] == "agg-ungated"} == {
        "aggregates", "affect_windows", "utterance_text"}
    assert all(k["reason"] == "not passed the quality gate yet" for k in report.kept if k["call_id"] == "agg-ungated")

    # 181 days: snippets and words go; affect windows, flags and scores stay.
    assert by_call["text-old"] == {("snippets", "snippet", "delete"), ("utterance_text", "utterances", "rewrite"),
                                   ("utterance_text", "review_note", "delete"), ("utterance_text", "review_verdict", "rewrite")}
    old, new = utterances_before["text-old"], _table(settings, "utterances", days["text-old"], "text-old")
    assert new.schema == old.schema and new.column("text").null_count == new.num_rows == old.num_rows
    assert new.drop_columns(["text"]).equals(old.drop_columns(["text"]))
    reviews = ReviewStore(settings)
    assert reviews.notes_of_call(days["text-old"], "text-old") == []
    [verdict] = reviews.verdicts_of_call(days["text-old"], "text-old")
    assert verdict.comment == "" and verdict.verdict == "confirmed" and verdict.reviewer == "rita"

    # 366 days: the three affect tables go too.
    assert {(k, t) for k, t, _ in by_call["affect-old"] if k == "affect_windows"} == {
        ("affect_windows", t) for t in AFFECT_TABLES}
    assert all(_table(settings, t, days["affect-old"], "affect-old") is None for t in AFFECT_TABLES)
    assert _table(settings, "qa_flags", days["affect-old"], "affect-old").num_rows == 1
    assert _table(settings, "conversation_metrics", days["affect-old"], "affect-old").num_rows == 2
    assert _table(settings, "calls", days["affect-old"], "affect-old").num_rows == 1
    assert _table(settings, "speaker_affect_quarters", days["affect-old"], "affect-old").num_rows > 0

    # 731 days: everything of the call goes, the manifest last; a quarantined call's too.
    for call_id in ("agg-old", "agg-quarantined"):
        assert _call_keys(settings, days[call_id], call_id) == set()
        assert report.deleted[max(i for i, r in enumerate(report.deleted) if r["call_id"] == call_id)]["kind"] == "manifest"
        assert {k for k, _, _ in by_call[call_id]} == {"snippets", "aggregates"}
    assert ("aggregates", "failures", "delete") in by_call["agg-old"]
    assert failures_key(ops, days["agg-old"], "agg-old") not in after
    assert landing_key(ops, days["agg-old"], "agg-old") not in after
    assert {t for k, t, _ in by_call["agg-old"] if k == "aggregates"} == {
        *TABLES, "manifest", "manifest_history", "review_verdict", "review_note", "review_assignment", "failures", "landing"}
    # ... but not while the raw media is still there: only the narrower limits apply then.
    assert {k for k, _, _ in by_call["agg-raw"]} == {"snippets", "utterance_text", "affect_windows"}
    assert CuratedStore(settings).read_manifest(days["agg-raw"], "agg-raw").loadable
    assert [k["reason"] for k in report.kept if k["call_id"] == "agg-raw" and k["data_kind"] == "aggregates"] == [
        "raw media still present: without its manifest the call would be analysed again"]

    # Idempotent: nothing left to do, nothing logged.
    again = run_retention(settings, now=NOW)
    assert again.deleted == [] and again.log_key is None and set(again.counts.values()) == {0}
    assert _curated(settings) == after


def _still_there(settings, kind: str, day: str) -> bool:
    """Is the data a kind's limit removes still there for the call "edge"?"""
    if kind == "utterance_text":
        return _table(settings, "utterances", day, "edge").column("text").null_count == 0
    if kind == "affect_windows":
        return all(_table(settings, t, day, "edge") is not None for t in AFFECT_TABLES)
    return CuratedStore(settings).read_manifest(day, "edge") is not None


@pytest.mark.parametrize("kind, limit", [
    ("utterance_text", "utterance_text_max_age_days"),
    ("affect_windows", "affect_window_max_age_days"),
    ("aggregates", "aggregate_max_age_days"),
])
def test_each_kind_goes_the_day_after_its_limit_and_not_before(settings, kind, limit):
    days = getattr(RetentionSettings(), limit)
    day = _days_ago(days)  # exactly `days` old all through NOW's date
    _commit(settings, "edge", day, reviews=False)

    at_limit = run_retention(settings, now=NOW.replace(hour=23, minute=59))
    assert at_limit.counts[kind] == 0 and _still_there(settings, kind, day)

    past = run_retention(settings, now=NOW + timedelta(days=1))
    assert past.counts[kind] > 0 and all(r["age_days"] == days + 1 for r in past.deleted if r["data_kind"] == kind)
    assert not _still_there(settings, kind, day)
    if kind == "aggregates":
        assert {k for k in _curated(settings) if not k.startswith(settings.s3.ops_prefix)} == set()


def test_rewriting_one_call_leaves_every_other_call_byte_identical(settings):
    old, twin = _days_ago(200), _days_ago(60)
    _commit(settings, "words-old", old)
    _commit(settings, "words-new", twin)
    _commit(settings, "words-old-2", old, gated=False, reviews=False)  # same day, not gated: its text stays
    client = object_store.s3_client(settings.s3)
    # Everything but the rewritten call's and the 200-day-old snippets (they go by date).
    others = {k: object_store.get_bytes(client, settings.s3.curated_bucket, k) for k in _curated(settings)
              if "call_id=words-old/" not in k and not k.startswith(f"snippets/date={old}/")}

    report = run_retention(settings, now=NOW)

    assert {(r["call_id"], r["kind"]) for r in report.deleted if r["data_kind"] == "utterance_text"} == {
        ("words-old", "utterances"), ("words-old", "review_note"), ("words-old", "review_verdict")}
    assert len(others) == 2 * (len(TABLES) + 1) + 4  # two calls' tables and manifests, words-new's snippet and reviews
    for key, data in others.items():
        assert object_store.get_bytes(client, settings.s3.curated_bucket, key) == data, key


@pytest.mark.parametrize("values, message", [
    ({"aggregate_max_age_days": 300}, "aggregate_max_age_days: must be at least retention.affect_window_max_age_days"),
    ({"utterance_text_max_age_days": 60}, "snippet_max_age_days: must not exceed retention.utterance_text_max_age_days"),
    ({"raw_max_age_days": 200}, "raw_max_age_days: must not exceed retention.utterance_text_max_age_days"),
    ({"utterance_text_max_age_days": -1}, "utterance_text_max_age_days: must be at least 0"),
])
def test_limits_out_of_order_fail_at_load(values, message):
    env = {f"CALLAFFECT_RETENTION__{k.upper()}": str(v) for k, v in values.items()}
    with pytest.raises(ValueError, match=message):
        load_settings(env=env)


def test_limits_may_be_equal_and_raw_may_outlive_snippets():
    limits = RetentionSettings(raw_max_age_days=60, snippet_max_age_days=7, utterance_text_max_age_days=60,
                               affect_window_max_age_days=30, aggregate_max_age_days=60)
    assert limits.raw_max_age_days > limits.snippet_max_age_days and limits.affect_window_max_age_days < 60


def test_the_cli_prints_per_kind_counts_and_the_next_marts_build_drops_what_went(settings, monkeypatch, capsys):
    settings = use_settings(monkeypatch, settings)
    today = utc_now().date()  # the CLI runs as of the clock
    days = {call_id: (today - timedelta(days=age)).isoformat()
            for call_id, age in (("text-old", 181), ("agg-old", 731), ("recent", 10))}
    for call_id, day in days.items():
        _commit(settings, call_id, day, reviews=False)

    assert cli.main(["retention"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    printed = json.loads(out)
    # text-old: its snippet and its text; agg-old: every table, a snippet, the manifest.
    assert printed["counts"] == {"raw_media": 0, "snippets": 2, "utterance_text": 1, "affect_windows": 0,
                                 "aggregates": len(TABLES) + 1}
    assert f"retention: raw_media 0, snippets 2, utterance_text 1, affect_windows 0, aggregates {len(TABLES) + 1}; 0 kept" in err
    assert "agg-old" not in err and "text-old" not in err  # counts only on the operator's line

    build_marts(settings)
    con = open_marts(settings)
    assert {r[0] for r in con.execute("select call_id from dim_calls").fetchall()} == {"text-old", "recent"}
    texts = dict(con.execute("select call_id, count(text) from fct_utterances group by call_id").fetchall())
    words = dict(con.execute("select call_id, sum(n_words) from fct_utterances group by call_id").fetchall())
    assert texts["text-old"] == 0 and texts["recent"] > 0 and words["text-old"] > 0
    flags = dict(con.execute("select call_id, speaker_text from mart_qa_flags").fetchall())
    assert flags["text-old"] == "" and flags["recent"]


def test_past_the_affect_window_limit_the_trends_keep_the_customers_affect(settings):
    days = {call_id: _days_ago(age) for call_id, age in (("affect-old", 366), ("recent", 10))}
    for call_id, day in days.items():
        _commit(settings, call_id, day, reviews=False)
    trends = "select call_date, calls, customer_valence, customer_arousal from mart_daily_trends order by call_date"
    quarters = "select call_id, q1_valence, q2_valence, q3_valence, q4_valence from mart_call_quarters order by call_id"

    def marts() -> tuple[list, list, dict]:
        build_marts(settings)
        con = open_marts(settings)
        windows = dict(con.execute("select call_id, count(*) from fct_speaker_affect group by call_id").fetchall())
        # Summed in another order once the windows are gone: equal to the last bits only.
        trend_rows, quarter_rows = ([[round(v, 9) if isinstance(v, float) else v for v in row]
                                     for row in con.execute(sql).fetchall()] for sql in (trends, quarters))
        return trend_rows, quarter_rows, windows

    trends_before, quarters_before, windows_before = marts()
    assert windows_before.keys() == set(days) and all(v is not None for row in trends_before for v in row)
    assert run_retention(settings, now=NOW).counts["affect_windows"] == len(AFFECT_TABLES)
    trends_after, quarters_after, windows_after = marts()
    assert windows_after.keys() == {"recent"}  # the old call's windows went ...
    assert trends_after == trends_before  # ... its day's affect and its quarters stayed
    assert quarters_after == quarters_before
