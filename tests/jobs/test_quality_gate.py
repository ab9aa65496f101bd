"""The quality gate: valid calls pass, each kind of violation fails with a message naming the
column, and gating committed calls records the verdict in (and quarantines by) the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from factories import curated_objects, make_call_tables, set_values, write_local

from pipeline.storage.curated import manifest_key, table_key
from pipeline.manifest import CallManifest
from pipeline.jobs.quality_gate import SUITE, gate_call_tables, gate_committed_calls
from pipeline.settings import Settings


@pytest.fixture(scope="module")
def call() -> dict[str, pa.Table]:
    return make_call_tables("call-q", "2024-05-01", duration_s=60.0, seed=7, video=True)


@pytest.mark.parametrize("frustrated,video", [(True, False), (False, False), (True, True)])
def test_valid_tables_pass(frustrated, video):
    tables = make_call_tables("call-ok", duration_s=120.0, seed=3, frustrated=frustrated, video=video)
    assert tables["qa_flags"].num_rows == (1 if frustrated else 0)
    assert (tables["face_tracks"].num_rows > 0) == video
    result = gate_call_tables(tables)
    assert result.passed, result.failures
    assert result.failures == [] and result.suite == SUITE


def _swap_rows(table: pa.Table, i: int, j: int) -> pa.Table:
    order = list(range(table.num_rows))
    order[i], order[j] = order[j], order[i]
    return table.take(order)


def _first_rows_of(table: pa.Table, speaker: str, n: int) -> list[int]:
    return [i for i, s in enumerate(table.column("speaker").to_pylist()) if s == speaker][:n]


# Each case: (table, how to break it, the message expected among the failures).
VIOLATIONS = {
    "valence out of range": (
        "speaker_affect",
        lambda t, c: set_values(t, "valence", {0: 1.7, 3: -2.5}),
        "speaker_affect.valence: 2 values outside [-1, 1]",
    ),
    "confidence out of range": (
        "speaker_affect",
        lambda t, c: set_values(t, "confidence", {1: 1.5}),
        "speaker_affect.confidence: 1 values outside [0, 1]",
    ),
    "flag score out of range": (
        "qa_flags",
        lambda t, c: set_values(t, "score", {0: -0.1}),
        "qa_flags.score: 1 values outside [0, 1]",
    ),
    "null speaker": ("speaker_turns", lambda t, c: set_values(t, "speaker", {2: None}), "speaker_turns.speaker: 1 null values"),
    "duplicate utterance id": (
        "utterances",
        lambda t, c: set_values(t, "utterance_id", {1: 0}),
        "utterances.utterance_id: 2 duplicate values",
    ),
    "unknown role": ("utterances", lambda t, c: set_values(t, "role", {0: "supervisor"}), "utterances.role: 1 values not in"),
    "negative start": (
        "speaker_turns",
        lambda t, c: set_values(t, "start_s", {0: -1.0}),
        "speaker_turns.start_s: 1 values below 0",
    ),
    "ends before it starts": (
        "speaker_turns",
        lambda t, c: set_values(t, "end_s", {1: t.column("start_s")[1].as_py() - 0.5}),
        "speaker_turns.end_s: 1 rows not ending after they start",
    ),
    "ends after the call": (
        "speaker_affect",
        lambda t, c: set_values(t, "end_s", {t.num_rows - 1: c["calls"].column("duration_s")[0].as_py() + 5.0}),
        "speaker_affect.end_s: 1 values after the end of the call",
    ),
    "out of time order": (
        "utterances",
        lambda t, c: _swap_rows(t, *_first_rows_of(t, "SPEAKER_00", 2)),
        "utterances.start_s: 1 rows out of time order within speaker",
    ),
    "two calls rows": ("calls", lambda t, c: pa.concat_tables([t, t]), "calls: expected exactly 1 row, found 2"),
    "rows of another call": (
        "stage_metrics",
        lambda t, c: set_values(t, "call_id", {0: "someone-else"}),
        "stage_metrics.call_id: 1 rows of another call",
    ),
    "face probability out of range": (
        "face_affect",
        lambda t, c: set_values(t, "p_happy", {0: 1.2}),
        "face_affect.p_happy: 1 values outside [0, 1]",
    ),
    "duplicate face track": (
        "face_tracks",
        lambda t, c: set_values(t, "track_id", {1: 0}),
        "face_tracks.track_id: 2 duplicate values",
    ),
    "face box outside the frame": (
        "face_tracks",
        lambda t, c: set_values(t, "box_x1", {0: 1.4}),
        "face_tracks.box_x1: 1 values outside the frame",
    ),
    "affect about the agent": (
        "speaker_affect",
        lambda t, c: set_values(t, "role", {0: "agent"}),
        "speaker_affect.role: 1 affect rows about a non-customer (inference policy)",
    ),
    "face affect of an unlinked face": (
        "face_affect",
        lambda t, c: set_values(t, "role", {0: None}),
        "face_affect.role: 1 null values",
    ),
    "quarter sums unlike the windows": (
        "speaker_affect_quarters",
        lambda t, c: set_values(t, "weight_s", {0: t.column("weight_s")[0].as_py() + 1.0}),
        "speaker_affect_quarters: SPEAKER_01's weight_s, valence x weight_s, arousal x weight_s differ from the "
        "speaker_affect windows' sums",
    ),
    "quarter out of range": (
        "speaker_affect_quarters",
        lambda t, c: set_values(t, "quarter", {0: 5}),
        "speaker_affect_quarters.quarter: 1 values outside [1, 4]",
    ),
    "quarter about the agent": (
        "speaker_affect_quarters",
        lambda t, c: set_values(t, "role", {0: "agent"}),
        "speaker_affect_quarters.role: 1 affect rows about a non-customer (inference policy)",
    ),
    "missing column": ("speaker_affect", lambda t, c: t.drop_columns(["valence"]), "speaker_affect: missing columns valence"),
    "wrong type": (
        "qa_flags",
        lambda t, c: t.set_column(t.column_names.index("score"), "score", t.column("score").cast(pa.string())),
        "qa_flags.score: type string, expected double",
    ),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_each_violation_fails_naming_the_column(call, case):
    table, breaks, expected = VIOLATIONS[case]
    tables = dict(call)
    tables[table] = breaks(call[table], call)
    result = gate_call_tables(tables)
    assert not result.passed
    assert any(f.startswith(expected) for f in result.failures), result.failures
    # The break is reported where it is, not as noise in other tables.
    assert all(f.startswith(table) for f in result.failures), result.failures


def test_every_affect_value_has_its_audit_row(call):
    result = gate_call_tables(call)
    affect = call["speaker_affect"].to_pylist()
    expected = sum(sum(r[c] is not None for c in ("text_valence", "voice_arousal", "face_valence")) for r in affect)
    assert result.affect_values == result.affect_values_audited == expected + call["face_affect"].num_rows > 0


def test_an_affect_value_without_its_audit_row_fails_the_gate_with_the_figure(call):
    audit = call["audit"].to_pylist()
    kept = [a for a in audit if not (a["role"] == "customer" and a["inference"] == "voice_arousal")]
    tables = {**call, "audit": pa.Table.from_pylist(kept, schema=call["audit"].schema)}
    result = gate_call_tables(tables)
    voiced = sum(r["voice_arousal"] is not None for r in call["speaker_affect"].to_pylist())
    assert not result.passed and result.affect_values - result.affect_values_audited == voiced > 0
    assert result.failures == [f"audit: {voiced} of {result.affect_values} affect values have no audit row of a "
                               "performed inference (e.g. SPEAKER_01 voice_arousal)"]


def test_missing_table_fails(call):
    tables = {k: v for k, v in call.items() if k != "utterances"}
    result = gate_call_tables(tables)
    assert not result.passed and result.failures == ["utterances: table missing"]


def test_examples_show_the_bad_values(call):
    tables = {**call, "speaker_affect": set_values(call["speaker_affect"], "arousal", {2: 4.0})}
    del tables["speaker_affect_quarters"]  # which would disagree with the changed window too
    (failure,) = gate_call_tables(tables).failures
    assert failure == "speaker_affect.arousal: 1 values outside [-1, 1] (e.g. 4)"


def _manifest(root: Path, date: str, call_id: str) -> CallManifest:
    return CallManifest.from_json((root / manifest_key("", date, call_id)).read_text())


def test_gate_committed_calls_quarantines_failures(tmp_path):
    good = make_call_tables("good", "2024-05-01", seed=1)
    bad = make_call_tables("bad", "2024-05-01", seed=2)
    bad["speaker_affect"] = set_values(bad["speaker_affect"], "valence", {0: 3.0})
    broken = make_call_tables("broken", "2024-05-02", seed=3)
    write_local(tmp_path, curated_objects(good, "good", "2024-05-01"))
    write_local(tmp_path, curated_objects(bad, "bad", "2024-05-01"))
    write_local(tmp_path, curated_objects(broken, "broken", "2024-05-02"))
    write_local(tmp_path, curated_objects(None, "unusable", "2024-05-02", status="quarantined", reason="not media"))
    # A table file lost after the commit: the manifest's row counts catch it.
    (tmp_path / table_key("", "utterances", "2024-05-02", "broken")).unlink()

    results = dict(gate_committed_calls(Settings(), tmp_path))

    assert set(results) == {"good", "bad", "broken"}  # the quarantined call is not gated
    assert results["good"].passed and not results["bad"].passed and not results["broken"].passed
    m_good = _manifest(tmp_path, "2024-05-01", "good")
    m_bad = _manifest(tmp_path, "2024-05-01", "bad")
    m_broken = _manifest(tmp_path, "2024-05-02", "broken")
    assert m_good.status == "ok" and m_good.quality["passed"] is True and m_good.quality["suite"] == SUITE
    assert m_good.quality["failures"] == [] and m_good.quality["checked_at"]
    assert m_bad.status == "quarantined"
    assert m_bad.reason.startswith("quality gate: speaker_affect.valence: 1 values outside [-1, 1]")
    assert m_bad.quality["passed"] is False and m_bad.quality["failures"] == results["bad"].failures
    assert m_broken.status == "quarantined"
    assert "utterances: file missing (manifest says" in m_broken.reason
    assert _manifest(tmp_path, "2024-05-02", "unusable").quality is None

    # Gated calls are not gated again; naming a call re-checks it.
    assert gate_committed_calls(Settings(), tmp_path) == []
    again = gate_committed_calls(Settings(), tmp_path, call_ids=["good"])
    assert [(c, r.passed) for c, r in again] == [("good", True)]
    # The rewrite is atomic: no temporary file is left next to the manifest.
    assert [p.name for p in (tmp_path / manifest_key("", "2024-05-01", "good")).parent.iterdir()] == ["_manifest.json"]
    assert json.loads((tmp_path / manifest_key("", "2024-05-01", "good")).read_text())["quality"]["passed"] is True
