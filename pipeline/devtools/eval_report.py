"""What ``callaffect eval`` reports: DER and WER of hypothesis files against references.

Each report has one row per file and a total, as a text table or as JSON.

- diarization: pyannote.metrics' DER with its components in seconds (confusion, missed
  detection, false alarm, scored reference speech) and the number of speakers on each side.
  Recordings are matched by the RTTM uri, or by order when each file holds one recording.
  ``collar`` is pyannote's: the *total* width of the unscored region centred on each reference
  boundary (0.25 = ±0.125 s, which is NIST md-eval's ``-c 0.125``). The total is pyannote's
  accumulated DER (all errors over all scored speech), not a mean of the files'.
- asr: WER after `pipeline.devtools.evaluation.normalize_text` on both sides (its docstring lists the
  rules), with substitutions, deletions and insertions; STM and VTT files are paired in order.
  The total is the sum of errors over the sum of reference words.

A file that is missing, cannot be read or cannot be paired raises ValueError or OSError (an STM
line with too few fields: IndexError) with a one-line reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # evaluation imports jiwer and pyannote: only once there is something to score
    from pipeline.devtools.evaluation import AsrReport, DiarizationReport


def _require_files(paths: Sequence[str]) -> None:
    if missing := [p for p in paths if not Path(p).is_file()]:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")


def score_diarization_files(reference_paths: Sequence[str], hypothesis_paths: Sequence[str], *,
                            collar: float, skip_overlap: bool, jer: bool) -> DiarizationReport:
    """DER of the hypothesis RTTM files against the reference RTTM files, paired by uri or order."""
    _require_files([*reference_paths, *hypothesis_paths])
    from pipeline.devtools.evaluation import pair_rttm_files, score_diarization

    pairs = pair_rttm_files(reference_paths, hypothesis_paths)
    return score_diarization(pairs, collar=collar, skip_overlap=skip_overlap, jer=jer)


def score_asr_files(reference_paths: Sequence[str], hypothesis_paths: Sequence[str]) -> AsrReport:
    """WER of each hypothesis WebVTT file against the reference STM file in the same place."""
    _require_files([*reference_paths, *hypothesis_paths])
    if len(reference_paths) != len(hypothesis_paths):
        raise ValueError(f"{len(reference_paths)} --ref files but {len(hypothesis_paths)} --hyp files: "
                         "they are paired in order")
    from pipeline.devtools.evaluation import score_asr

    return score_asr(zip(reference_paths, hypothesis_paths))


def diarization_json(report: DiarizationReport) -> str:
    return json.dumps({
        "metric": "der", "collar": report.collar, "skip_overlap": report.skip_overlap,
        "files": [asdict(f) for f in report.files], "total": asdict(report.total),
    }, indent=2)


def diarization_table(report: DiarizationReport, *, jer: bool) -> str:
    """The table, then a line that says how the collar and overlap were scored."""
    header = ["file", "DER", "confusion_s", "missed_s", "false_alarm_s", "scored_s", "speakers ref/hyp"]
    if jer:
        header.append("JER")
    rows = []
    for f in [*report.files, report.total]:
        row = [f.uri, f"{f.der:.4f}", f"{f.confusion:.2f}", f"{f.missed_detection:.2f}",
               f"{f.false_alarm:.2f}", f"{f.total:.2f}", f"{f.ref_speakers}/{f.hyp_speakers}"]
        if jer:
            row.append(f"{f.jer:.4f}")
        rows.append(row)
    overlap = "overlap not scored" if report.skip_overlap else "overlap scored"
    return (f"{_table(header, rows)}\n"
            f"collar {report.collar:g} s total width (±{report.collar / 2:g} s around reference boundaries), {overlap}")


def asr_json(report: AsrReport) -> str:
    def as_dict(s):
        return {**asdict(s), "errors": s.errors, "wer": s.wer}

    return json.dumps({
        "metric": "wer", "normaliser": "pipeline.devtools.evaluation.normalize_text",
        "files": [as_dict(s) for s in report.files], "total": as_dict(report.total),
    }, indent=2)


def asr_table(report: AsrReport) -> str:
    header = ["file", "WER", "ref_words", "substitutions", "deletions", "insertions"]
    return _table(header, [[s.name, f"{s.wer:.4f}", str(s.ref_words), str(s.substitutions),
                            str(s.deletions), str(s.insertions)] for s in [*report.files, report.total]])


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned numbers; a rule above the last (total) row."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])
