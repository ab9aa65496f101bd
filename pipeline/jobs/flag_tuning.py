"""`callaffect flags tune`: what other frustration thresholds would flag, judged by the QA verdicts.

The production rule (pipeline.stages.flags.frustration_flags) is re-run on the customer windows
in the marts (fct_speaker_affect, rebuilt as AffectWindow records; fct_utterances gives the
utterance spans a flag cites) for a grid of ``valence_max`` x ``arousal_min`` around the
configured values, plus any the operator names. Each setting's flags are matched with the
reviewed flags (fct_qa_verdicts: a flag's review status is the latest verdict of anyone): a
produced flag takes the status of the reviewed flag of the same call and speaker it overlaps
most. Per setting: flags produced and seconds flagged, how many flags overlap a reviewed flag,
the precision among those (confirmed / (confirmed + dismissed), unsure left out), and how many
confirmed flags it still catches.

It reads the marts file and changes nothing: an operator who prefers a setting commits it to
the settings ([flags] valence_max, arousal_min), for the calls analysed from then on, whose flags
then carry a new ``rule_version`` (pipeline.stages.flags.rule_version: the rule and its thresholds).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from dataclasses import dataclass

import duckdb

from pipeline.records import AffectWindow, Flag, Utterance
from pipeline.settings import FlagSettings, Settings
from pipeline.stages.flags import frustration_flags

# Offsets around the configured thresholds that make the grid (valence and arousal are in [-1, 1]).
GRID_STEPS = (-0.2, -0.1, 0.0, 0.1, 0.2)


@dataclass(frozen=True)
class ReviewedFlag:
    call_id: str
    speaker: str
    start_s: float
    end_s: float
    status: str  # the latest verdict of anyone: confirmed | dismissed | unsure


@dataclass(frozen=True)
class CallEvidence:
    """One call's customer windows and utterance spans: what the rule reads."""

    call_id: str
    customers: frozenset[str]
    windows: tuple[AffectWindow, ...]
    utterances: tuple[Utterance, ...]


@dataclass(frozen=True)
class SettingResult:
    valence_max: float
    arousal_min: float
    current: bool  # the configured setting
    flags: int
    # Seconds flagged in all. Unlike the count (a tighter threshold can split one flag in two),
    # it never grows as a threshold tightens: the review load.
    flagged_s: float
    overlapping_reviewed: int  # produced flags that overlap a reviewed flag
    confirmed: int  # ... whose reviewed flag was confirmed
    dismissed: int
    unsure: int
    precision: float | None  # confirmed / (confirmed + dismissed) among them
    confirmed_caught: int  # reviewed confirmed flags overlapped by at least one produced flag


@dataclass(frozen=True)
class TuningReport:
    marts_path: str
    calls: int
    current_flags: int  # flags in the marts (fct_qa_flags), as the pipeline made them
    reviewed_flags: int
    confirmed_flags: int
    settings: list[SettingResult]


def load_evidence(con: duckdb.DuckDBPyConnection) -> list[CallEvidence]:
    """Every loaded call's customer windows and utterance spans (no words: the rule needs none)."""
    windows: dict[str, list[AffectWindow]] = defaultdict(list)
    for row in con.execute(
        "select call_id, speaker, start_s, end_s, valence, arousal, confidence, text_valence, voice_valence,"
        " voice_arousal, modalities, face_valence, face_arousal"
        " from fct_speaker_affect where role = 'customer' order by call_id, speaker, start_s"
    ).fetchall():
        windows[row[0]].append(AffectWindow(
            speaker=row[1], start=row[2], end=row[3], valence=row[4], arousal=row[5], confidence=row[6],
            text_valence=row[7], voice_valence=row[8], voice_arousal=row[9],
            modalities=tuple(m for m in (row[10] or "").split(",") if m), face_valence=row[11], face_arousal=row[12],
        ))
    utterances: dict[str, list[Utterance]] = defaultdict(list)
    for call_id, utterance_id, speaker, start_s, end_s in con.execute(
        "select call_id, utterance_id, speaker, start_s, end_s from fct_utterances where role = 'customer'"
        " order by call_id, start_s, utterance_id"
    ).fetchall():
        utterances[call_id].append(Utterance(utterance_id, speaker, start_s, end_s, ()))
    return [
        CallEvidence(call_id, frozenset(w.speaker for w in ws), tuple(ws), tuple(utterances[call_id]))
        for call_id, ws in windows.items()
    ]


def load_reviewed(con: duckdb.DuckDBPyConnection) -> list[ReviewedFlag]:
    rows = con.execute(
        "select call_id, speaker, start_s, end_s, verdict from fct_qa_verdicts where is_flag_status"
        " order by call_id, start_s"
    ).fetchall()
    return [ReviewedFlag(*row) for row in rows]


def threshold_grid(configured: float, extra: list[float] | None) -> list[float]:
    """The configured value with GRID_STEPS around it, and any extra values, sorted."""
    values = {round(configured + step, 4) for step in GRID_STEPS} | {round(v, 4) for v in extra or ()}
    return sorted(values)


def _overlap(flag: Flag, reviewed: ReviewedFlag) -> float:
    return min(flag.end, reviewed.end_s) - max(flag.start, reviewed.start_s)


def score_setting(
    evidence: list[CallEvidence], reviewed: list[ReviewedFlag], rule: FlagSettings, current: bool
) -> SettingResult:
    """Run the rule with ``rule`` on every call and match its flags with the reviewed ones."""
    reviewed_by_call: dict[str, list[ReviewedFlag]] = defaultdict(list)
    for r in reviewed:
        reviewed_by_call[r.call_id].append(r)
    produced, flagged_s, statuses, caught = 0, 0.0, [], set()
    for call in evidence:
        flags = frustration_flags(list(call.windows), set(call.customers), list(call.utterances), rule, call.call_id)
        produced += len(flags)
        flagged_s += sum(flag.end - flag.start for flag in flags)
        for flag in flags:
            touching = [r for r in reviewed_by_call[call.call_id] if r.speaker == flag.speaker and _overlap(flag, r) > 0]
            if touching:
                best = max(touching, key=lambda r: _overlap(flag, r))
                statuses.append(best.status)
                caught.update(r for r in touching if r.status == "confirmed")
    confirmed, dismissed = statuses.count("confirmed"), statuses.count("dismissed")
    return SettingResult(
        valence_max=rule.valence_max,
        arousal_min=rule.arousal_min,
        current=current,
        flags=produced,
        flagged_s=round(flagged_s, 3),
        overlapping_reviewed=len(statuses),
        confirmed=confirmed,
        dismissed=dismissed,
        unsure=statuses.count("unsure"),
        precision=confirmed / (confirmed + dismissed) if confirmed + dismissed else None,
        confirmed_caught=len(caught),
    )


def tune_flags(
    settings: Settings,
    marts_path: str | os.PathLike | None = None,
    valence_max: list[float] | None = None,
    arousal_min: list[float] | None = None,
) -> TuningReport:
    """Score every (valence_max, arousal_min) of the grid against the marts' verdicts."""
    path = str(marts_path or settings.marts.duckdb_path)
    with duckdb.connect(path, read_only=True) as con:
        evidence = load_evidence(con)
        reviewed = load_reviewed(con)
        current_flags = con.execute("select count(*) from fct_qa_flags").fetchone()[0]
    configured = settings.flags
    results = [
        score_setting(
            evidence, reviewed, dataclasses.replace(configured, valence_max=v, arousal_min=a),
            current=(v, a) == (round(configured.valence_max, 4), round(configured.arousal_min, 4)),
        )
        for v in threshold_grid(configured.valence_max, valence_max)
        for a in threshold_grid(configured.arousal_min, arousal_min)
    ]
    return TuningReport(
        marts_path=path,
        calls=len(evidence),
        current_flags=current_flags,
        reviewed_flags=len(reviewed),
        confirmed_flags=sum(1 for r in reviewed if r.status == "confirmed"),
        settings=results,
    )


def report_json(report: TuningReport) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2)


def report_table(report: TuningReport) -> str:
    """A plain-text table, the configured setting marked with '*'."""
    header = ("valence_max", "arousal_min", "flags", "flagged_s", "on_reviewed", "confirmed", "dismissed", "unsure", "precision",
              "confirmed_caught")
    lines = [
        f"{report.calls} calls, {report.current_flags} flags in the marts, {report.reviewed_flags} reviewed "
        f"({report.confirmed_flags} confirmed); precision = confirmed / (confirmed + dismissed) among flags "
        "on a reviewed flag; * = the configured setting",
        "  ".join(f"{h:>11}" for h in header),
    ]
    for r in report.settings:
        precision = "-" if r.precision is None else f"{r.precision:.3f}"
        cells = (f"{r.valence_max:+.2f}", f"{r.arousal_min:+.2f}", r.flags, f"{r.flagged_s:.1f}", r.overlapping_reviewed, r.confirmed,
                 r.dismissed, r.unsure, precision, f"{r.confirmed_caught}/{report.confirmed_flags}")
        lines.append("  ".join(f"{c!s:>11}" for c in cells) + (" *" if r.current else ""))
    return "\n".join(lines)
