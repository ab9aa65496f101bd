"""`callaffect eval`: score diarization (DER) and transcripts (WER) against references.

    callaffect eval diarization --ref RTTM [RTTM ...] --hyp RTTM [RTTM ...]
                                [--collar 0.25] [--skip-overlap] [--jer] [--json]
    callaffect eval asr --ref STM [STM ...] --hyp VTT [VTT ...] [--json]

Both print one row per file and a total: a text table, or JSON with ``--json``. ``--ref`` and
``--hyp`` may be repeated (``--ref a --hyp a' --ref b --hyp b'``) or take several files each.

- diarization: pyannote.metrics' DER with its components in seconds (confusion, missed
  detection, false alarm, scored reference speech) and the number of speakers on each side.
  Recordings are matched by the RTTM uri, or by order when each file holds one recording.
  ``--collar`` is pyannote's: the *total* width of the unscored region centred on each reference
  boundary (0.25 = ±0.125 s, which is NIST md-eval's ``-c 0.125``). The total is pyannote's
  accumulated DER (all errors over all scored speech), not a mean of the files'.
- asr: WER after `pipeline.devtools.evaluation.normalize_text` on both sides (its docstring lists the
  rules), with substitutions, deletions and insertions; STM and VTT files are paired in order.
  The total is the sum of errors over the sum of reference words.

Exit 0 with the scores; exit 1 with a one-line reason on stderr when a file is missing or
cannot be read or paired.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

EXIT_OK, EXIT_ERROR = 0, 1


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``eval`` (with ``diarization`` and ``asr``) to an argparse sub-parser set.

    Each leaf sets ``fn``: ``args.fn(args)`` runs it and returns the exit code.
    """
    parser = subparsers.add_parser("eval", help="score diarization (DER) or transcripts (WER) against references",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="eval_command", required=True)

    p = commands.add_parser("diarization", help="DER per file and in total (pyannote.metrics)")
    p.add_argument("--ref", nargs="+", action="extend", required=True, metavar="RTTM", help="reference RTTM files")
    p.add_argument("--hyp", nargs="+", action="extend", required=True, metavar="RTTM", help="hypothesis RTTM files")
    p.add_argument("--collar", type=float, default=0.25,
                   help="total width in seconds of the unscored region centred on each reference boundary "
                        "(pyannote's convention: 0.25 = ±0.125 s = md-eval -c 0.125; default 0.25)")
    p.add_argument("--skip-overlap", action="store_true", help="do not score regions where reference speakers overlap")
    p.add_argument("--jer", action="store_true", help="also report the Jaccard error rate")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(fn=cmd_eval_diarization)

    p = commands.add_parser("asr", help="WER per file and in total, with a documented normaliser")
    p.add_argument("--ref", nargs="+", action="extend", required=True, metavar="STM", help="reference STM files")
    p.add_argument("--hyp", nargs="+", action="extend", required=True, metavar="VTT",
                   help="hypothesis WebVTT files, in the order of --ref")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(fn=cmd_eval_asr)
    return parser


def _fail(message: str) -> int:
    print(f"callaffect eval: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not Path(p).is_file()]


def cmd_eval_diarization(args) -> int:
    if missing := _missing(args.ref + args.hyp):
        return _fail(f"no such file: {', '.join(missing)}")
    from pipeline.devtools.evaluation import pair_rttm_files, score_diarization

    try:
        pairs = pair_rttm_files(args.ref, args.hyp)
        report = score_diarization(pairs, collar=args.collar, skip_overlap=args.skip_overlap, jer=args.jer)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({
            "metric": "der", "collar": report.collar, "skip_overlap": report.skip_overlap,
            "files": [asdict(f) for f in report.files], "total": asdict(report.total),
        }, indent=2))
        return EXIT_OK
    header = ["file", "DER", "confusion_s", "missed_s", "false_alarm_s", "scored_s", "speakers ref/hyp"]
    if args.jer:
        header.append("JER")
    rows = []
    for f in [*report.files, report.total]:
        row = [f.uri, f"{f.der:.4f}", f"{f.confusion:.2f}", f"{f.missed_detection:.2f}",
               f"{f.false_alarm:.2f}", f"{f.total:.2f}", f"{f.ref_speakers}/{f.hyp_speakers}"]
        if args.jer:
            row.append(f"{f.jer:.4f}")
        rows.append(row)
    print(_table(header, rows))
    overlap = "overlap not scored" if report.skip_overlap else "overlap scored"
    print(f"collar {report.collar:g} s total width (±{report.collar / 2:g} s around reference boundaries), {overlap}")
    return EXIT_OK


def cmd_eval_asr(args) -> int:
    if missing := _missing(args.ref + args.hyp):
        return _fail(f"no such file: {', '.join(missing)}")
    if len(args.ref) != len(args.hyp):
        return _fail(f"{len(args.ref)} --ref files but {len(args.hyp)} --hyp files: they are paired in order")
    from pipeline.devtools.evaluation import score_asr

    try:
        report = score_asr(zip(args.ref, args.hyp))
    except (ValueError, OSError, IndexError) as exc:  # IndexError: an STM line with too few fields
        return _fail(str(exc))
    scores = [*report.files, report.total]
    if args.json:
        as_dict = lambda s: {**asdict(s), "errors": s.errors, "wer": s.wer}  # noqa: E731
        print(json.dumps({
            "metric": "wer", "normaliser": "pipeline.devtools.evaluation.normalize_text",
            "files": [as_dict(s) for s in report.files], "total": as_dict(report.total),
        }, indent=2))
        return EXIT_OK
    header = ["file", "WER", "ref_words", "substitutions", "deletions", "insertions"]
    print(_table(header, [[s.name, f"{s.wer:.4f}", str(s.ref_words), str(s.substitutions),
                           str(s.deletions), str(s.insertions)] for s in scores]))
    return EXIT_OK


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned numbers; a rule above the last (total) row."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.devtools.eval_cli eval ...``: the same commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="callaffect")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
