"""The nightly trend report over real marts (DuckDB, built from factory calls under a local curated
root): every section, self-contained, numbers that agree with the marts, sentences where there is
nothing to plot, the same bytes on a rebuild, and the report written to S3 by the CLI."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from airflow_env import use_settings
from factories import curated_objects, make_call_tables, set_values, write_local

from pipeline import cli
from pipeline.jobs import trend_report
from pipeline.jobs.marts import build_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.jobs.trend_report import SECTION_TITLES, build_trend_report, report_key
from pipeline.settings import Settings
from pipeline.storage.curated import CuratedStore
from pipeline.storage.reviews import ReviewStore, Verdict

DAY = "2024-05-03"
# Namespace names of inline SVG: identifiers, never fetched.
SVG_NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def _calls(root: Path, frustrated: bool = True) -> list[tuple[str, str]]:
    """Seven committed calls over three days (one day with a single call), the last with no agent
    given, one with a phone number redacted in a frustrated utterance; one call quarantined."""
    calls = [(f"call-{i}", f"2024-05-0{1 + min(i, 6) // 3}") for i in range(7)]
    for i, (call_id, day) in enumerate(calls):
        tables = make_call_tables(call_id, day, seed=i, frustrated=frustrated)
        if i == 6:
            tables["calls"] = set_values(tables["calls"], "agent_id", {0: None})
        if i == 0 and frustrated:
            texts = tables["utterances"].column("text").to_pylist()
            angry = next(n for n, t in enumerate(texts) if "frustrated" in t)
            tables["utterances"] = set_values(tables["utterances"], "text", {angry: "call me on [PHONE] I am frustrated"})
        write_local(root, curated_objects(tables, call_id, day))
    write_local(root, curated_objects(None, "empty-1", "2024-05-02", status="quarantined", reason="empty file (0 bytes)"))
    return calls


def _marts(tmp: Path, frustrated: bool = True) -> tuple[Settings, Path, Path]:
    root = tmp / "curated"
    _calls(root, frustrated)
    settings = Settings()
    gate_committed_calls(settings, curated_root=root)
    marts = tmp / "marts.duckdb"
    build_marts(settings, out_path=marts, curated_root=root)
    return settings, root, marts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Marts with flags (and no verdicts yet), and the report of DAY over them."""
    settings, root, marts = _marts(tmp_path_factory.mktemp("trend"))
    key = build_trend_report(settings, day=DAY, marts_path=marts, curated_root=root)
    return settings, root, marts, key


def _sections(html: str) -> dict[str, str]:
    parts = re.findall(r"<section[^>]*>\s*<h2>(.*?)</h2>(.*?)</section>", html, flags=re.S)
    return {title: body for title, body in parts}


def _window() -> tuple[date, date]:
    end = date.fromisoformat(DAY)
    return end - timedelta(days=trend_report.WINDOW_DAYS - 1), end


def test_the_report_has_every_section_a_plot_in_each_and_nothing_from_elsewhere(built):
    _, root, _, key = built
    assert key == report_key(DAY) == f"reports/{DAY}/index.html"
    html = (root / key).read_text(encoding="utf-8")
    sections = _sections(html)
    assert list(sections) == list(SECTION_TITLES)
    plots = {title: body.count("<svg") + body.count('<img src="data:') for title, body in sections.items()}
    # Two plots by agent and by queue, two of pipeline health (stages, quarantines); no verdicts yet,
    # so precision is a sentence.
    assert plots == dict(zip(SECTION_TITLES, (1, 1, 1, 2, 1, 0, 2, 0)))
    assert 'class="empty">No flag of these weeks has a confirmed or dismissed verdict yet' in html
    assert "<script" not in html and "@import" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= SVG_NAMESPACES
    assert "Every number here is an estimate" in html
    assert "7 call(s) loaded,\n1 quarantined" in html


def test_the_valence_is_the_marts_and_its_band_comes_from_the_spread_between_calls(built):
    _, _, marts, _ = built
    with duckdb.connect(str(marts), read_only=True) as con:
        section = trend_report.valence_section(con, *_window())
        mart = dict(con.execute("select call_date::varchar, customer_valence from mart_daily_trends").fetchall())
    assert [row[0] for row in section.rows] == ["2024-05-01", "2024-05-02", "2024-05-03"]
    for day, calls, valence, interval in section.rows:
        assert valence == f"{mart[day]:+.2f}"
        if calls == 1:
            assert interval == "–"  # one call: no spread to speak of
        else:
            low, high = (float(v) for v in interval.split(" to "))
            assert low < float(valence) < high


def test_the_words_of_flagged_segments_stand_out_without_stop_words_or_placeholders(built):
    _, _, marts, _ = built
    with duckdb.connect(str(marts), read_only=True) as con:
        words = trend_report.over_represented_words(con, *_window())
    found = {w["word"]: w for w in words}
    # Said only in the customers' frustrated stretches (factories.py), so over-represented there.
    assert {"frustrated", "ridiculous"} <= set(found)
    assert not set(found) & {"this", "i", "am", "phone", "okay", "thanks"}
    assert all(w["flagged"] >= trend_report.MIN_WORD_COUNT and w["low"] < w["log_odds"] < w["high"] for w in words)
    assert [w["z"] for w in words] == sorted((w["z"] for w in words), reverse=True)


def test_flags_are_counted_per_agent_and_queue_and_quarantines_by_reason(built):
    _, _, marts, _ = built
    with duckdb.connect(str(marts), read_only=True) as con:
        groups = trend_report.groups_section(con, *_window())
        health = trend_report.health_section(con, *_window())
    by_agent = {name: flags for by, name, _, _, flags, _ in groups.rows if by == "agent"}
    assert by_agent == {"agent-0": 2, "agent-1": 2, "agent-2": 2}
    assert [row[:2] for row in groups.rows if row[0] == "queue"] == [("queue", "billing")]
    assert "1 flag(s) on 1 call(s) with no agent given." in groups.empty
    assert health.rows == [("empty file (0 bytes)", 1)]
    assert len(health.figures) == 2  # real-time factor by stage, quarantines by reason


def test_precision_shows_once_verdicts_are_in(tmp_path):
    settings, root, marts = _marts(tmp_path)
    reviews = ReviewStore(settings, root=str(root))
    for call_id, day, verdict in (("call-0", "2024-05-01", "confirmed"), ("call-1", "2024-05-01", "confirmed"),
                                  ("call-3", "2024-05-02", "dismissed"), ("call-4", "2024-05-02", "unsure")):
        reviews.add_verdict(Verdict.new(f"{call_id}-f0", call_id, day, "frustration-v1", "lead1", verdict))
    build_marts(settings, out_path=marts, curated_root=root)
    with duckdb.connect(str(marts), read_only=True) as con:
        section = trend_report.precision_section(con, *_window())
    assert section.empty is None and len(section.figures) == 1
    [week] = section.rows
    assert week[:8] == ("2024-W18", "frustration-v1", 7, 4, 2, 1, 1, "67%")
    low, high = (int(v.rstrip("%")) for v in week[8].split(" to "))
    assert low < 67 < high


def test_no_flags_and_no_verdicts_read_as_sentences(tmp_path):
    settings, root, marts = _marts(tmp_path, frustrated=False)
    html = (root / build_trend_report(settings, day=DAY, marts_path=marts, curated_root=root)).read_text()
    sections = _sections(html)
    assert list(sections) == list(SECTION_TITLES)
    assert "No segment was flagged on these dates." in sections["Frustration and flags"]
    assert "No word is over-represented in flagged segments" in sections["Words over-represented in flagged segments"]
    assert "No flag was raised in these weeks." in sections["Flag precision from QA verdicts"]
    # Long before any call: every section is a sentence, none an error.
    empty = (root / build_trend_report(settings, day="2023-01-01", marts_path=marts, curated_root=root)).read_text()
    assert list(_sections(empty)) == list(SECTION_TITLES) and "<svg" not in empty
    assert "No call was loaded for these dates." in empty and "No stage timings for these dates." in empty


def test_a_rebuild_over_the_same_marts_writes_the_same_bytes(built):
    settings, root, marts, key = built
    first = (root / key).read_bytes()
    assert build_trend_report(settings, day=DAY, marts_path=marts, curated_root=root) == key
    assert (root / key).read_bytes() == first


def test_a_bad_day_or_missing_marts_is_refused(built, tmp_path):
    settings, root, marts, _ = built
    for day in ("2024-5-3", "20240503", "2024-05-03\n", "../etc", "2024-02-30"):
        with pytest.raises(ValueError):
            build_trend_report(settings, day=day, marts_path=marts, curated_root=root)
    with pytest.raises(FileNotFoundError):
        build_trend_report(settings, day=DAY, marts_path=tmp_path / "none.duckdb", curated_root=root)


def test_the_cli_writes_the_report_to_the_curated_bucket(settings, tmp_path, monkeypatch, capsys):
    settings = use_settings(monkeypatch, settings)
    root = tmp_path / "curated"
    _calls(root)
    gate_committed_calls(settings, curated_root=root)
    build_marts(settings, out_path=settings.marts.duckdb_path, curated_root=root)

    assert cli.main(["report", "build", "--day", DAY]) == cli.EXIT_OK

    printed = json.loads(capsys.readouterr().out)
    assert printed == {"key": report_key(DAY), "uri": f"s3://{settings.s3.curated_bucket}/{report_key(DAY)}"}
    page = CuratedStore(settings).read_bytes(printed["key"])
    assert page.startswith(b"<!doctype html>") and b"Words over-represented in flagged segments" in page
    assert cli.main(["report", "build", "--day", "yesterday"]) == cli.EXIT_ERROR


def test_the_governance_section_shows_withheld_agent_inferences_and_full_audit_completeness(built):
    _, _, marts, _ = built
    with duckdb.connect(str(marts), read_only=True) as con:
        section = trend_report.governance_section(con, *_window())
        values = con.execute("select sum(affect_values) from stg_manifests where loadable").fetchone()[0]
    by = {(role, inference): (rule, made, withheld) for role, inference, rule, made, withheld in section.rows}
    assert by[("agent", "voice_arousal")] == ("agent-no-affect", 0, 7)
    assert by[("customer", "voice_arousal")] == ("customer-consent", 7, 0)
    assert values > 0 and f"{values} of {values} (100.0%)" in section.about
