"""`callaffect flags tune` on real marts built from tests/factories.py calls with QA verdicts:
the production rule re-run from the marts makes the flags it makes from the tables, tighter
thresholds make fewer flags, and each setting is scored against the reviewed flags."""

from __future__ import annotations

import json
import os

import pytest
from factories import curated_objects, make_call_tables, write_local

from pipeline import cli
from pipeline.jobs.flag_tuning import threshold_grid, tune_flags
from pipeline.jobs.marts import build_marts
from pipeline.records import AffectWindow, Utterance
from pipeline.settings import ENV_PREFIX, FlagSettings, Settings
from pipeline.stages.flags import frustration_flags
from pipeline.storage.reviews import ReviewStore, Verdict

DAY = "2024-05-01"
PASSED = {"passed": True, "failures": [], "suite": "callaffect_call_tables@1", "checked_at": "2024-06-01T12:00:00+00:00"}
# call id -> (frustrated customer, the latest verdict on its flag: None = not reviewed)
CALLS = {"t1": (True, "confirmed"), "t2": (True, "dismissed"), "t3": (True, "unsure"), "t4": (True, None), "t5": (False, None)}


@pytest.fixture(scope="module")
def marts(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    tables = {}
    for seed, (call_id, (frustrated, _)) in enumerate(CALLS.items()):
        tables[call_id] = make_call_tables(call_id, DAY, duration_s=120.0, seed=seed, frustrated=frustrated)
        write_local(root, curated_objects(tables[call_id], call_id, DAY, quality=PASSED))
    reviews = ReviewStore(Settings(), root=root)
    reviews.add_verdict(Verdict.new("t2-f0", "t2", DAY, "frustration-v1", "alice", "confirmed"))  # overruled below
    for call_id, (_, verdict) in CALLS.items():
        if verdict:
            reviews.add_verdict(Verdict.new(f"{call_id}-f0", call_id, DAY, "frustration-v1", "bob", verdict))
    path = tmp_path_factory.mktemp("marts") / "callaffect.duckdb"
    build_marts(Settings(), root, path)
    return path, tables


def _flags_from_the_tables(tables, rule: FlagSettings) -> int:
    """The rule run straight on the factory's Arrow tables, not through the marts."""
    produced = 0
    for call_id, call in tables.items():
        rows = [r for r in call["speaker_affect"].to_pylist() if r["role"] == "customer"]
        windows = [
            AffectWindow(r["speaker"], r["start_s"], r["end_s"], r["valence"], r["arousal"], r["confidence"],
                         r["text_valence"], r["voice_valence"], r["voice_arousal"], tuple(r["modalities"].split(",")))
            for r in rows
        ]
        utterances = [Utterance(u["utterance_id"], u["speaker"], u["start_s"], u["end_s"], ())
                      for u in call["utterances"].to_pylist() if u["role"] == "customer"]
        produced += len(frustration_flags(windows, {r["speaker"] for r in rows}, utterances, rule, call_id))
    return produced


def test_the_rule_rerun_from_the_marts_matches_the_rule_on_the_tables(marts):
    path, tables = marts
    report = tune_flags(Settings(), path)
    assert report.calls == len(CALLS) and report.current_flags == 4
    assert (report.reviewed_flags, report.confirmed_flags) == (3, 1)
    for result in report.settings:
        rule = FlagSettings(valence_max=result.valence_max, arousal_min=result.arousal_min)
        assert result.flags == _flags_from_the_tables(tables, rule), (result.valence_max, result.arousal_min)


def test_tighter_thresholds_make_fewer_flags_and_are_scored_against_the_verdicts(marts):
    path, _ = marts
    report = tune_flags(Settings(), path, valence_max=[-0.6], arousal_min=[0.9])
    by_setting = {(r.valence_max, r.arousal_min): r for r in report.settings}
    valences = threshold_grid(-0.2, [-0.6])
    arousals = threshold_grid(0.1, [0.9])
    assert valences == [-0.6, -0.4, -0.3, -0.2, -0.1, 0.0] and arousals == [-0.1, 0.0, 0.1, 0.2, 0.3, 0.9]
    assert len(report.settings) == 36 and [k for k, r in by_setting.items() if r.current] == [(-0.2, 0.1)]

    # Seconds flagged never grow as a threshold tightens (a count may: one flag can split in two).
    for a in arousals:  # a lower valence_max is tighter
        seconds = [by_setting[(v, a)].flagged_s for v in valences]
        assert seconds == sorted(seconds) and seconds[0] == 0.0 < seconds[-1], (a, seconds)
    for v in valences:  # a higher arousal_min is tighter
        seconds = [by_setting[(v, a)].flagged_s for a in arousals]
        assert seconds == sorted(seconds, reverse=True), (v, seconds)
    assert all(by_setting[(-0.6, a)].flags == 0 for a in arousals)  # no customer window is that negative
    # At -0.3 a window needs a raised voice (valence <= -0.6 alone would do; none is that low), and
    # no voice reaches 0.9; at -0.2 the angry windows' valence (about -0.5) is low enough alone.
    assert by_setting[(-0.3, 0.1)].flags == 4 and by_setting[(-0.3, 0.9)].flags == 0
    assert by_setting[(-0.2, 0.9)].flags == 4

    current = by_setting[(-0.2, 0.1)]
    # The frustrated stretches are found and match the reviewed flags: t1 confirmed, t2 dismissed
    # (bob's verdict came after alice's), t3 unsure (left out of the precision).
    assert current.flags == 4
    assert (current.confirmed, current.dismissed, current.unsure) == (1, 1, 1)
    assert current.precision == pytest.approx(0.5) and current.confirmed_caught == 1
    for none in (by_setting[(-0.6, 0.1)], by_setting[(-0.3, 0.9)]):
        assert (none.flags, none.overlapping_reviewed, none.precision, none.confirmed_caught) == (0, 0, None, 0)


def test_flags_tune_on_the_command_line(marts, monkeypatch, capsys):
    path, _ = marts
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    assert cli.main(["flags", "tune", "--marts", str(path), "--json", "--valence-max", "-0.6", "-0.5"]) == cli.EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["reviewed_flags"] == 3 and len(report["settings"]) == 7 * 5
    assert {s["valence_max"] for s in report["settings"]} >= {-0.6, -0.5}

    assert cli.main(["flags", "tune", "--marts", str(path)]) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["valence_max", "arousal_min", "flags"] and len(lines) == 2 + 25
    [marked] = [line for line in lines if line.endswith(" *")]
    assert marked.split()[:2] == ["-0.20", "+0.10"]
