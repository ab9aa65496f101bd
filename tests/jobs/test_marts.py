"""The marts: only committed, gate-passed calls are loaded; the marts compute what they claim;
builds are idempotent and swapped in atomically; and DuckDB reads the curated Parquet from the
real local S3 endpoint through httpfs, offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from factories import affect_quarters, curated_objects, make_call_tables, set_values, write_local

from pipeline.storage import object_store
from pipeline.jobs.marts import SQL_DIR, MartsBuildError, build_marts, format_query, open_marts, sample_queries
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.settings import Settings
from pipeline.storage.reviews import ReviewStore, Verdict

LOADED = {"a1": "2024-05-01", "c1": "2024-05-02", "c2": "2024-05-02"}
PASSED = {"passed": True, "failures": [], "suite": "callaffect_call_tables@1", "checked_at": "2024-06-01T12:00:00+00:00"}


def _calls() -> dict[str, dict[str, pa.Table]]:
    calls = {
        "a1": make_call_tables("a1", "2024-05-01", duration_s=90.0, seed=1),
        "c1": make_call_tables("c1", "2024-05-02", duration_s=200.0, seed=3, video=True),
        "c2": make_call_tables("c2", "2024-05-02", duration_s=60.0, seed=4, frustrated=False),
    }
    # Speaker by speaker (still in time order within each): the marts must order across speakers.
    utt = calls["a1"]["utterances"]
    calls["a1"]["utterances"] = utt.sort_by([("speaker", "ascending"), ("start_s", "ascending")])
    return calls


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> tuple[Path, dict[str, dict[str, pa.Table]]]:
    """A local curated root: 3 good calls, one failing the gate, one quarantined by analysis,
    and one committed after the gate ran (pending)."""
    root = tmp_path_factory.mktemp("curated")
    calls = _calls()
    for call_id, tables in calls.items():
        write_local(root, curated_objects(tables, call_id, LOADED[call_id]))
    bad = make_call_tables("b1", "2024-05-01", seed=2)
    bad["speaker_affect"] = set_values(bad["speaker_affect"], "valence", {0: 1.7})
    write_local(root, curated_objects(bad, "b1", "2024-05-01"))
    write_local(root, curated_objects(None, "q1", "2024-05-02", status="quarantined", reason="unusable input: not a media file"))

    gated = dict(gate_committed_calls(Settings(), root))
    assert {c for c, r in gated.items() if r.passed} == set(LOADED) and not gated["b1"].passed

    write_local(root, curated_objects(make_call_tables("p1", "2024-05-01", seed=5), "p1", "2024-05-01"))
    return root, calls


@pytest.fixture(scope="module")
def built(curated, tmp_path_factory):
    root, _ = curated
    out = tmp_path_factory.mktemp("marts") / "callaffect.duckdb"
    return build_marts(Settings(), root, out)


def _df(path: str, sql: str) -> pd.DataFrame:
    with duckdb.connect(path, read_only=True) as con:
        return con.sql(sql).df()


def test_only_committed_gate_passed_calls_are_loaded(built):
    assert built.calls_loaded == 3 and built.calls_quarantined == 2 and built.calls_pending_gate == 1
    assert set(_df(built.path, "select call_id from dim_calls").call_id) == set(LOADED)
    for table in ("fct_speaker_turns", "fct_utterances", "fct_speaker_affect", "fct_qa_flags", "fct_stage_metrics", "fct_audit"):
        assert set(_df(built.path, f"select distinct call_id from {table}").call_id) <= set(LOADED), table
    assert built.tables["fct_qa_flags"] == 2  # a1 and c1 are frustrated, c2 is not
    status = _df(built.path, "select * from fct_call_status order by call_id").set_index("call_id")
    assert list(status.index) == ["a1", "b1", "c1", "c2", "p1", "q1"]
    assert status.loc["b1", "status"] == "quarantined"
    assert status.loc["b1", "reason"].startswith("quality gate: speaker_affect.valence")
    assert status.loc["q1", "reason"] == "unusable input: not a media file"
    assert status.loc["p1", "status"] == "ok" and pd.isna(status.loc["p1", "quality_passed"]) and not status.loc["p1", "loaded"]
    health = _df(
        built.path,
        "select distinct call_date, calls_loaded, calls_quarantined, calls_failed_gate, calls_pending_gate"
        " from mart_pipeline_health order by 1",
    )
    assert health.drop(columns="call_date").values.tolist() == [[1, 1, 1, 1], [2, 1, 0, 0]]


def test_face_tables_and_the_timeline_carry_video_calls_only(built, curated):
    _, calls = curated
    tracks = _df(built.path, "select * from fct_face_tracks order by call_id, track_id")
    assert set(tracks.call_id) == {"c1"}
    assert tracks.linked.tolist() == [True, True, False] and tracks.role.tolist()[:2] == ["agent", "customer"]
    expected_share = calls["c1"]["face_tracks"].column("n_usable").to_numpy() / calls["c1"]["face_tracks"].column("n_detections").to_numpy()
    assert tracks.usable_share.tolist() == pytest.approx(expected_share.tolist())
    face_affect = _df(built.path, "select call_id, count(*) n from fct_face_affect group by call_id")
    assert face_affect.values.tolist() == [["c1", calls["c1"]["face_affect"].num_rows]]
    timeline = _df(built.path, "select call_id, count(face_valence) with_face, count(*) n from mart_speaker_affect_timeline group by call_id order by call_id")
    by_call = timeline.set_index("call_id")
    assert by_call.loc["c1", "with_face"] == by_call.loc["c1", "n"] > 0
    assert by_call.loc["a1", "with_face"] == by_call.loc["c2", "with_face"] == 0


def test_qa_flags_mart_joins_the_span_text_in_order(built, curated):
    _, calls = curated
    flags = _df(built.path, "select * from mart_qa_flags order by score_rank")
    assert list(flags.score) == sorted(flags.score, reverse=True) and list(flags.score_rank) == [1, 2]
    for row in flags.itertuples():
        utt = calls[row.call_id]["utterances"].to_pandas().sort_values("start_s")
        span = utt[(utt.start_s < row.end_s) & (utt.end_s > row.start_s)]
        assert len(span) > 1
        assert row.speaker_text == " ".join(span[span.speaker == row.speaker].text)
        assert row.transcript == "\n".join(f"{r}: {t}" for r, t in zip(span.role, span.text))
        assert row.n_utterances == (span.speaker == row.speaker).sum()
        assert row.call_date.strftime("%Y-%m-%d") == LOADED[row.call_id]


def _expected_daily_trends(calls: dict[str, dict[str, pa.Table]]) -> pd.DataFrame:
    rows = []
    for day in sorted(set(LOADED.values())):
        ids = [c for c, d in LOADED.items() if d == day]
        info = pd.concat([calls[c]["calls"].to_pandas() for c in ids])
        flags = pd.concat([calls[c]["qa_flags"].to_pandas() for c in ids])
        aff = pd.concat([calls[c]["speaker_affect"].to_pandas() for c in ids])
        aff["w"] = aff.confidence * (aff.end_s - aff.start_s)
        cust = aff[aff.role == "customer"]
        frustrated = flags[(flags.role == "customer") & flags.flag_type.str.contains("frustration")].call_id.nunique()
        rows.append(
            {
                "calls": len(ids),
                "minutes": info.duration_s.sum() / 60,
                "frustrated_call_share": frustrated / len(ids),
                "customer_valence": (cust.valence * cust.w).sum() / cust.w.sum(),
                "customer_arousal": (cust.arousal * cust.w).sum() / cust.w.sum(),
                "flags_per_speech_hour": len(flags) / (info.speech_s.sum() / 3600),
            }
        )
    return pd.DataFrame(rows)


def test_daily_trends_equal_a_pandas_recomputation(built, curated):
    _, calls = curated
    got = _df(built.path, "select * from mart_daily_trends order by call_date")
    expected = _expected_daily_trends(calls)
    assert [d.strftime("%Y-%m-%d") for d in got.call_date] == ["2024-05-01", "2024-05-02"]
    for column in expected.columns:
        assert got[column].tolist() == pytest.approx(expected[column].tolist(), rel=1e-9), column
    assert got.frustrated_call_share.tolist() == [1.0, 0.5]


def test_rebuild_is_idempotent(built, curated):
    root, _ = curated
    again = build_marts(Settings(), root, built.path)
    assert again.tables == built.tables
    for mart in ("mart_daily_trends", "mart_qa_flags"):
        first = _df(built.path, f"select * from {mart} order by all")
        pd.testing.assert_frame_equal(first, _df(again.path, f"select * from {mart} order by all"), rtol=1e-12)


ANALYST = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    print(con.sql("select count(*) from dim_calls").fetchone()[0], flush=True)
    sys.stdin.readline()  # the build runs meanwhile
    print(con.sql("select count(*) from dim_calls").fetchone()[0], flush=True)
    """
)


def test_swap_while_an_analyst_reads_the_old_file(curated, tmp_path):
    root = tmp_path / "curated"
    shutil.copytree(curated[0], root)
    out = tmp_path / "callaffect.duckdb"
    assert build_marts(Settings(), root, out).calls_loaded == 3
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert analyst.stdout.readline().strip() == "3"
        write_local(root, curated_objects(make_call_tables("d1", "2024-05-03", seed=9), "d1", "2024-05-03", quality=PASSED))
        report = build_marts(Settings(), root, out)
        assert report.calls_loaded == 4
        with duckdb.connect(str(out), read_only=True) as con:
            assert con.sql("select count(*) from dim_calls").fetchone()[0] == 4
        # The analyst's open connection still reads the whole old build.
        analyst.stdin.write("\n")
        analyst.stdin.flush()
        assert analyst.stdout.readline().strip() == "3"
    finally:
        analyst.stdin.close()
        assert analyst.wait(timeout=30) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["callaffect.duckdb", "curated"]


def test_failed_build_leaves_the_old_file(curated, tmp_path):
    out = tmp_path / "callaffect.duckdb"
    build_marts(Settings(), curated[0], out)
    before = out.read_bytes()
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    broken = sql_dir / "marts" / "mart_zz_broken.sql"
    broken.write_text("create or replace table mart_zz_broken as select * from no_such_table;")
    with pytest.raises(MartsBuildError, match="marts/mart_zz_broken.sql"):
        build_marts(Settings(), curated[0], out, sql_dir=sql_dir)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["callaffect.duckdb", "sql"]  # no partial build left
    assert _df(str(out), "select count(*) as n from dim_calls").n[0] == 3


def test_a_table_no_call_has_yet_does_not_break_the_build(tmp_path):
    tables = make_call_tables("x1", "2024-05-01", seed=6)
    del tables["qa_flags"], tables["audit"]
    write_local(tmp_path / "curated", curated_objects(tables, "x1", "2024-05-01", quality=PASSED))
    report = build_marts(Settings(), tmp_path / "curated", tmp_path / "m.duckdb")
    assert report.calls_loaded == 1 and report.tables["mart_qa_flags"] == 0 and report.tables["fct_audit"] == 0
    trends = _df(report.path, "select flags, frustrated_call_share from mart_daily_trends")
    assert trends.values.tolist() == [[0, 0.0]]
    # An empty curated root builds empty marts.
    empty = build_marts(Settings(), tmp_path / "nothing", tmp_path / "empty.duckdb")
    assert empty.calls_loaded == 0 and empty.tables["mart_daily_trends"] == 0


def test_sample_queries_run(built):
    for name, sql in sample_queries().items():
        text = format_query(built.path, sql)
        assert "┌" in text, name
    assert "a1" in format_query(built.path, sample_queries()["top_flags"])


def test_marts_from_the_local_s3_endpoint(settings, tmp_path):
    """Gate and marts against moto's server on 127.0.0.1: DuckDB reads s3:// through httpfs."""
    client = object_store.s3_client(settings.s3)
    calls = _calls()
    bad = make_call_tables("b1", "2024-05-01", seed=2)
    bad["utterances"] = set_values(bad["utterances"], "role", {0: "supervisor"})
    for call_id, tables, day in [("a1", calls["a1"], "2024-05-01"), ("c1", calls["c1"], "2024-05-02"), ("b1", bad, "2024-05-01")]:
        for key, data in curated_objects(tables, call_id, day).items():
            object_store.put_bytes(client, settings.s3.curated_bucket, key, data)

    gated = dict(gate_committed_calls(settings))
    assert {c: r.passed for c, r in gated.items()} == {"a1": True, "b1": False, "c1": True}

    report = build_marts(settings)
    assert report.curated_root == f"s3://{settings.s3.curated_bucket}/"
    assert report.path == str(Path(settings.marts.duckdb_path).resolve())
    assert report.calls_loaded == 2 and report.calls_quarantined == 1
    expected_utterances = calls["a1"]["utterances"].num_rows + calls["c1"]["utterances"].num_rows
    assert report.tables["fct_utterances"] == expected_utterances
    # The staging views read the bucket live; the materialised tables need no S3 at all.
    with open_marts(settings, curated_root=report.curated_root) as con:
        assert con.sql("select count(*) from stg_utterances").fetchone()[0] == expected_utterances
        assert con.sql("select count(*) from stg_calls where call_id = 'b1'").fetchone()[0] == 0
    with open_marts(settings) as con:
        assert con.sql("select count(*) from mart_qa_flags").fetchone()[0] == 2


# --- the verdict loop: QA verdicts from the review store, and the customer's mood by quarter ----


def _verdict(call_id: str, call_date: str, reviewer: str, verdict: str, minute: int, rule: str = "frustration-v1") -> Verdict:
    at = (datetime(2024, 6, 3, 9, 0, tzinfo=timezone.utc) + timedelta(minutes=minute)).isoformat()
    return Verdict(uuid.uuid4().hex, f"{call_id}-f0", call_id, call_date, rule, reviewer, verdict, "", at)


def test_the_verdict_marts_build_with_no_verdicts(built):
    assert built.tables["fct_qa_verdicts"] == 0 and built.verdicts_not_loaded == 0
    precision = _df(built.path, "select * from mart_flag_precision")
    assert precision[["iso_week", "flags", "flags_reviewed", "judgements_scored", "flags_multi_reviewed"]].values.tolist() == [
        ["2024-W18", 2, 0, 0, 0]]
    assert precision[["precision", "brier_score", "reviewer_agreement"]].isna().all(axis=None)
    quarters = _df(built.path, "select call_id, valence_shift from mart_call_quarters order by call_id")
    assert quarters.call_id.tolist() == sorted(LOADED) and quarters.valence_shift.notna().all()


# Flag scores set by hand, so precision, Brier score and agreement can be worked out below.
SCORED_CALLS = {  # call id: (call date, ISO week, flag score)
    "w18a": ("2024-04-29", "2024-W18", 0.8),  # a Monday
    "w18b": ("2024-05-01", "2024-W18", 0.6),
    "w18c": ("2024-05-05", "2024-W18", 0.9),  # a Sunday: still week 18
    "w19a": ("2024-05-06", "2024-W19", 0.7),
    "y25a": ("2024-12-30", "2025-W01", 0.5),  # ISO year 2025 starts on Monday 2024-12-30
}


def test_flag_precision_is_exact_on_known_verdicts(tmp_path):
    root = tmp_path / "curated"
    for call_id, (day, _, score) in SCORED_CALLS.items():
        tables = make_call_tables(call_id, day, seed=len(call_id) + int(day[-2:]))
        tables["qa_flags"] = set_values(tables["qa_flags"], "score", {0: score})
        write_local(root, curated_objects(tables, call_id, day, quality=PASSED))
    reviews = ReviewStore(Settings(), root=root)
    for v in [
        _verdict("w18a", "2024-04-29", "alice", "confirmed", 1),
        _verdict("w18a", "2024-04-29", "alice", "dismissed", 2),  # alice's latest: dismissed
        _verdict("w18a", "2024-04-29", "bob", "confirmed", 3),  # the flag's status: confirmed
        _verdict("w18b", "2024-05-01", "alice", "dismissed", 1),
        _verdict("w18b", "2024-05-01", "bob", "dismissed", 2),
        _verdict("w18c", "2024-05-05", "carol", "unsure", 1),
        _verdict("w19a", "2024-05-06", "alice", "confirmed", 1),
        _verdict("w19a", "2024-05-06", "bob", "dismissed", 2, rule="frustration-v0"),  # another rule's flag
        _verdict("gone", "2024-05-01", "alice", "dismissed", 1),  # a call not in the marts
    ]:
        reviews.add_verdict(v)

    report = build_marts(Settings(), root, tmp_path / "m.duckdb")
    assert report.tables["fct_qa_verdicts"] == 7 and report.verdicts_not_loaded == 2
    facts = _df(report.path, "select * from fct_qa_verdicts where call_id = 'w18a' order by created_at")
    assert facts.is_latest_by_reviewer.tolist() == [False, True, True]
    assert facts.is_flag_status.tolist() == [False, False, True]
    assert facts.score.tolist() == [0.8] * 3 and set(facts.week_start.astype(str)) == {"2024-04-29"}

    got = _df(report.path, "select * from mart_flag_precision order by week_start").set_index("iso_week")
    assert got.index.tolist() == ["2024-W18", "2024-W19", "2025-W01"]
    assert (got.rule_version == "frustration-v1").all() and got["flags"].tolist() == [3, 1, 1]
    w18 = got.loc["2024-W18"]
    # Status per flag: w18a confirmed (bob, latest), w18b dismissed, w18c unsure (left out).
    assert (w18.flags_reviewed, w18.flags_confirmed, w18.flags_dismissed, w18.flags_unsure) == (3, 1, 1, 1)
    assert w18.precision == pytest.approx(1 / 2)
    # Each reviewer's latest decisive verdict: alice dismissed w18a (0.8 vs 0), bob confirmed w18a
    # (0.8 vs 1), alice and bob dismissed w18b (0.6 vs 0 twice).
    assert w18.judgements_scored == 4
    assert w18.brier_score == pytest.approx((0.8**2 + 0.2**2 + 0.6**2 + 0.6**2) / 4)  # 0.35
    # Two flags have two reviewers: they disagree on w18a and agree on w18b.
    assert (w18.flags_multi_reviewed, w18.flags_agreed, w18.reviewer_agreement) == (2, 1, pytest.approx(0.5))
    w19 = got.loc["2024-W19"]  # bob's verdict was on the frustration-v0 flag: not counted
    assert (w19.flags_reviewed, w19.precision, w19.judgements_scored) == (1, 1.0, 1)
    assert w19.brier_score == pytest.approx(0.3**2) and w19.flags_multi_reviewed == 0 and pd.isna(w19.reviewer_agreement)
    y25 = got.loc["2025-W01"]
    assert y25.flags_reviewed == 0 and pd.isna(y25.precision) and pd.isna(y25.brier_score)


def _customer_arc(call_id: str, day: str, windows: list[tuple[str, float, float, float, float]],
                  quarters_written: bool = True) -> dict[str, pa.Table]:
    """An 80 s call whose speaker_affect is exactly ``windows``: (role, start, end, valence, confidence),
    with the speaker_affect_quarters the analysis writes, or none (a call from before schema 6)."""
    tables = make_call_tables(call_id, day, duration_s=80.0, seed=11, frustrated=False)
    template = tables["speaker_affect"].to_pylist()[0]
    speakers = {"agent": "SPEAKER_00", "customer": "SPEAKER_01"}
    rows = [
        {**template, "speaker": speakers[role], "role": role, "start_s": start, "end_s": end, "valence": valence,
         "confidence": confidence}
        for role, start, end, valence, confidence in windows
    ]
    tables["speaker_affect"] = pa.Table.from_pylist(rows, schema=tables["speaker_affect"].schema)
    if quarters_written:
        tables["speaker_affect_quarters"] = affect_quarters(tables)
    else:
        del tables["speaker_affect_quarters"]
    return tables


@pytest.mark.parametrize("quarters_written", [True, False], ids=["quarters-written", "computed-from-windows"])
def test_call_quarters_on_known_calls(tmp_path, quarters_written):
    turned = [  # quarters of the 80 s call: [0, 20) [20, 40) [40, 60) [60, 80]
        ("customer", 0.0, 5.0, -0.6, 0.5),
        ("customer", 10.0, 20.0, -0.2, 1.0),
        ("customer", 17.5, 22.5, 0.0, 0.8),  # midpoint 20.0: opens quarter 2
        ("agent", 40.0, 45.0, -1.0, 1.0),  # the agent's mood is not the customer's
        ("customer", 60.0, 70.0, 0.4, 0.5),
        ("customer", 75.0, 80.0, 0.1, 0.25),
    ]
    worse = [("customer", 0.0, 5.0, 0.5, 0.9), ("customer", 40.0, 45.0, 0.0, 0.9), ("customer", 70.0, 80.0, -0.5, 0.6)]
    root = tmp_path / "curated"
    for call_id, windows in (("turned", turned), ("worse", worse)):
        tables = _customer_arc(call_id, "2024-05-01", windows, quarters_written)
        write_local(root, curated_objects(tables, call_id, "2024-05-01", quality=PASSED))
    report = build_marts(Settings(), root, tmp_path / "m.duckdb")

    got = _df(report.path, "select * from mart_call_quarters order by call_id").set_index("call_id")
    # Weighted by confidence x window length, as the daily trends.
    q1 = (-0.6 * 0.5 * 5 + -0.2 * 1.0 * 10) / (0.5 * 5 + 1.0 * 10)
    q4 = (0.4 * 0.5 * 10 + 0.1 * 0.25 * 5) / (0.5 * 10 + 0.25 * 5)
    row = got.loc["turned"]
    assert [row.q1_valence, row.q2_valence, row.q4_valence] == pytest.approx([q1, 0.0, q4])
    assert pd.isna(row.q3_valence)  # only the agent spoke in the third quarter
    assert row.valence_shift == pytest.approx(q4 - q1) and row.turned_around and not row.ended_worse
    row = got.loc["worse"]
    assert [row.q1_valence, row.q3_valence, row.q4_valence, row.valence_shift] == pytest.approx([0.5, 0.0, -0.5, -1.0])
    assert pd.isna(row.q2_valence) and row.ended_worse and not row.turned_around


def test_verdicts_survive_a_marts_rebuild_and_a_new_store(settings):
    client = object_store.s3_client(settings.s3)
    for key, data in curated_objects(make_call_tables("a1", "2024-05-01", seed=1), "a1", "2024-05-01", quality=PASSED).items():
        object_store.put_bytes(client, settings.s3.curated_bucket, key, data)
    written = [
        ReviewStore(settings).add_verdict(Verdict.new("a1-f0", "a1", "2024-05-01", "frustration-v1", reviewer, verdict))
        for reviewer, verdict in (("alice", "confirmed"), ("bob", "dismissed"))
    ]
    for _ in range(2):
        report = build_marts(settings)
        with open_marts(settings) as con:
            loaded = con.sql("select verdict_id, reviewer, verdict from fct_qa_verdicts order by reviewer").fetchall()
            agreement = con.sql("select reviewer_agreement from mart_flag_precision").fetchone()[0]
        assert loaded == [(v.verdict_id, v.reviewer, v.verdict) for v in written] and agreement == 0.0
        assert report.tables["fct_qa_verdicts"] == 2
    assert sorted(v.verdict_id for v in ReviewStore(settings).verdicts()) == sorted(v.verdict_id for v in written)


def test_governance_marts_count_decisions_consents_and_audit_completeness(built, curated):
    _, calls = curated
    decisions = _df(built.path, "select role, inference, policy_rule, performed, sum(decisions) n, sum(calls) calls"
                                " from mart_inference_decisions group by all order by all")
    agent = decisions[decisions.role == "agent"]
    assert set(agent.policy_rule) == {"agent-no-affect"} and not agent.performed.any()
    customer = decisions[decisions.role == "customer"]
    assert customer.performed.all() and set(customer.policy_rule) == {"customer-consent"}
    # Every loaded call has a text and a voice decision per speaker; only the video call has face ones.
    by = customer.set_index("inference")
    assert by.loc["text_valence", "calls"] == by.loc["voice_arousal", "calls"] == len(LOADED)
    assert by.loc["face_expression", "calls"] == 1
    consents = _df(built.path, "select modality, sum(calls_consented) n_yes, sum(calls_refused) n_no from mart_consents group by 1 order by 1")
    assert consents.set_index("modality").loc["text_affect"].tolist() == [len(LOADED), 0]
    completeness = _df(built.path, "select sum(affect_values) v, sum(affect_values_audited) a from stg_manifests where loadable")
    expected = sum(
        sum(sum(r[c] is not None for c in ("text_valence", "voice_arousal", "face_valence")) for r in t["speaker_affect"].to_pylist())
        + t["face_affect"].num_rows
        for t in calls.values()
    )
    assert completeness.values.tolist() == [[expected, expected]]


def test_agent_affect_written_under_an_older_policy_never_reaches_a_mart(tmp_path):
    """Defence in depth: a call gated before the inference policy existed, with the agent's affect
    and utterance valence in its Parquet, loads without them."""
    tables = make_call_tables("old1", "2024-05-01", duration_s=60.0, seed=9, video=True)
    customer = tables["speaker_affect"].to_pylist()
    tables["speaker_affect"] = pa.Table.from_pylist(customer + [{**r, "speaker": "SPEAKER_00", "role": "agent"} for r in customer],
                                                    schema=tables["speaker_affect"].schema)
    faces = tables["face_affect"].to_pylist()
    tables["face_affect"] = pa.Table.from_pylist(faces + [{**r, "track_id": 0, "speaker": "SPEAKER_00", "role": "agent"} for r in faces],
                                                 schema=tables["face_affect"].schema)
    tables["utterances"] = pa.Table.from_pylist([{**u, "text_valence": 0.4} for u in tables["utterances"].to_pylist()],
                                                schema=tables["utterances"].schema)
    write_local(tmp_path / "curated", curated_objects(tables, "old1", "2024-05-01", quality=PASSED))
    built = build_marts(Settings(), tmp_path / "curated", tmp_path / "marts.duckdb")
    with duckdb.connect(str(built.path), read_only=True) as con:
        roles = lambda table: {r for (r,) in con.execute(f"select distinct role from {table}").fetchall()}  # noqa: E731
        assert roles("fct_speaker_affect") == roles("fct_face_affect") == roles("mart_speaker_affect_timeline") == {"customer"}
        assert con.execute("select count(text_valence) from fct_utterances where role = 'agent'").fetchone() == (0,)
        assert con.execute("select count(text_valence) from fct_utterances where role = 'customer'").fetchone()[0] > 0


def test_no_mart_reads_the_coaching_table_and_none_holds_agent_affect(built):
    assert not [p.name for p in SQL_DIR.rglob("*.sql") if "coaching_affect" in p.read_text()]
    with duckdb.connect(str(built.path), read_only=True) as con:
        tables = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
        assert not {t for t in tables if "coaching" in t}
        columns = {c for (c,) in con.execute("select column_name from information_schema.columns").fetchall()}
        assert not {c for c in columns if c.startswith("agent_") and c != "agent_id"}
        assert con.execute("select count(*) from fct_speaker_affect where role <> 'customer'").fetchone() == (0,)
        assert con.execute("select count(*) from fct_face_affect where role is distinct from 'customer'").fetchone() == (0,)
