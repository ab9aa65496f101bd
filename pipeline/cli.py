"""The `callaffect` command line. Other tools call it: keep its contract stable.

    callaffect analyze MEDIA --out DIR [--call-id ID] [--metadata FILE] [--config FILE]
    callaffect batch | quality-gate | retention | marts build | report build [--day D]   (the scheduled jobs)
    callaffect erase --call-id ID | --subject ID --request-id R --requested-by WHO [--dry-run] [--no-marts]
    callaffect s3 serve | synth | demo | eval diarization|asr      (developer tooling)
    callaffect users add NAME --role ROLE [--password-stdin] | users list   (review app accounts)
    callaffect flags tune [--valence-max V ...] [--arousal-min A ...] [--json]   (reads the marts)

Exit codes, for every command:
    0  done, nothing failed
    1  the command could not run: bad settings or arguments, S3 or the marts build failed,
       eval's files missing, unreadable or unpaired (a one-line reason on stderr, never a traceback)
    2  analyze: unusable input or metadata (one-line reason on stderr; the manifest is still
       written, with status "quarantined")
    3  done, but some items failed: batch: calls not committed (retried next run);
       quality-gate: calls failed the gate (now quarantined); erase: a call is being analysed
       (nothing erased: run it again later)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_QUARANTINED, EXIT_PARTIAL = 0, 1, 2, 3


def _settings(args):
    from pipeline.settings import load_settings

    return load_settings(getattr(args, "config", None))


def _progress(message: str) -> None:
    print(f"[callaffect {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _refuse(args, call_id: str, reason: str) -> int:
    """Quarantine before any analysis: the manifest says why, stderr has one line."""
    from pipeline.call.exports import CallResult, write_local
    from pipeline.manifest import CallManifest

    write_local(CallResult(CallManifest(call_id, source_uri=args.media).quarantine(reason)), args.out)
    print(f"callaffect: {call_id}: quarantined: {reason}", file=sys.stderr)
    return EXIT_QUARANTINED


def cmd_analyze(args) -> int:
    from pipeline import metadata as call_metadata
    from pipeline.call.analyze import analyze_call
    from pipeline.storage.keys import valid_call_id
    from pipeline.call.exports import write_local

    settings = _settings(args)
    media = args.media
    if args.call_id is not None and not valid_call_id(args.call_id):
        raise ValueError(f"--call-id {args.call_id!r}: letters, digits, '_', '.', '-' only, starting with a letter or digit")
    fallback_id = args.call_id or (Path(media).stem if valid_call_id(Path(media).stem) else "call")
    try:
        metadata = call_metadata.parse(Path(args.metadata).read_bytes()) if args.metadata else call_metadata.CallMetadata()
    except call_metadata.MetadataError as exc:
        return _refuse(args, fallback_id, str(exc))
    with tempfile.TemporaryDirectory(prefix="callaffect-") as tmp:
        local = Path(media)
        if media.startswith("s3://"):
            from pipeline.storage.object_store import download_to, parse_s3_uri, s3_client

            bucket, key = parse_s3_uri(media)
            local = Path(tmp) / Path(key).name
            _progress(f"downloading {media}")
            download_to(s3_client(settings.s3), bucket, key, local)
        call_id = args.call_id or metadata.call_id or fallback_id
        _progress(f"analysing {media} as call {call_id}")
        result = analyze_call(local, call_id, settings=settings, metadata=metadata, source_uri=media, progress=_progress)
    manifest_path = write_local(result, args.out)
    if not result.ok:
        print(f"callaffect: {call_id}: quarantined: {result.manifest.reason}", file=sys.stderr)
        return EXIT_QUARANTINED
    m = result.manifest
    _progress(
        f"done: {m.tables.get('speaker_turns', 0)} turns, {m.tables.get('utterances', 0)} utterances, "
        f"{m.tables.get('qa_flags', 0)} flags; manifest {manifest_path}"
    )
    return EXIT_OK


class _BatchBar:
    """The batch's progress bar on stderr (tqdm): calls done, ok/quarantined/failed, time left."""

    def __init__(self):
        self.bar = None
        self.counts = {"ok": 0, "quarantined": 0, "failed": 0}

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="call", file=sys.stderr, dynamic_ncols=True, desc="batch")

    def done(self, call_id: str, outcome: str) -> None:
        # No call id on the bar: it is a log line like any other (no personal data in logs).
        if outcome in self.counts:
            self.counts[outcome] += 1
        self.bar.set_postfix(self.counts, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_batch(args) -> int:
    from pipeline.jobs.batch import DateRange, run_batch, select_recordings

    settings = _settings(args)
    dates = DateRange.parse(args.dates) if args.dates else None
    mode = "reprocess" if args.reprocess else "stale" if args.stale else "pending"
    if mode == "reprocess" and dates is None:
        raise ValueError("--reprocess needs --dates (reprocessing every call ever recorded is not a backfill)")
    if args.dry_run:
        selection = select_recordings(settings, dates, mode)
        print(json.dumps(selection.to_dict(), indent=2))
        for rec, why in selection.selected:
            print(f"{rec.call_date} {rec.call_id}: {why}", file=sys.stderr)
        for call_id, why in selection.not_reprocessable.items():
            print(f"{call_id}: {why}", file=sys.stderr)
        return EXIT_OK
    bar = _BatchBar() if args.progress or sys.stderr.isatty() else None
    try:
        report = run_batch(settings, limit=args.limit, dates=dates, mode=mode, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(_as_dict(report), indent=2, default=str))
    for call_id, why in report.not_reprocessable.items():
        print(f"callaffect: {call_id}: {why}", file=sys.stderr)
    if report.failed:
        print(f"callaffect: {len(report.failed)} call(s) not committed, retried next run", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def cmd_marts_build(args) -> int:
    from pipeline.jobs.marts import build_marts

    report = build_marts(_settings(args), out_path=args.out)
    print(json.dumps(_as_dict(report), indent=2, default=str))
    return EXIT_OK


def cmd_report_build(args) -> int:
    from pipeline.jobs.trend_report import build_trend_report
    from pipeline.storage.curated import CuratedStore

    settings = _settings(args)
    key = build_trend_report(settings, day=args.day)
    print(json.dumps({"key": key, "uri": CuratedStore(settings).uri(key)}, indent=2))
    return EXIT_OK


def cmd_cost(args) -> int:
    from pipeline.jobs.cost import cost_report, render_text

    try:
        report = cost_report(_settings(args), marts_path=args.marts, bench_path=args.bench,
                             curated_root=args.curated_root, utilisation=args.utilisation)
    except (ValueError, OSError) as exc:
        print(f"callaffect: cost: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_text(report))
    return EXIT_OK


def cmd_governance_report(args) -> int:
    from datetime import date

    from pipeline.jobs.governance import governance_report, render_text

    try:
        date_from, date_to = date.fromisoformat(args.date_from), date.fromisoformat(args.date_to)
        report = governance_report(_settings(args), date_from, date_to, marts_path=args.marts)
    except ValueError as exc:
        print(f"callaffect: governance report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_text(report))
    return EXIT_OK


def cmd_quality_gate(args) -> int:
    from pipeline.jobs.quality_gate import gate_committed_calls

    results = gate_committed_calls(_settings(args))
    failed = [(call_id, r.failures) for call_id, r in results if not r.passed]
    print(json.dumps({"checked": len(results), "failed": failed}, indent=2))
    if failed:
        print(f"callaffect: {len(failed)} call(s) failed the quality gate and are quarantined", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def cmd_retention(args) -> int:
    from pipeline.jobs.retention import run_retention

    report = run_retention(_settings(args))
    print(json.dumps(report.to_dict(), indent=2, default=str))
    # The per-kind counts on stderr too: the one line an operator reads (no keys, no call ids).
    counts = ", ".join(f"{kind} {n}" for kind, n in report.counts.items())
    print(f"callaffect: retention{' (dry run)' if report.dry_run else ''}: {counts}; {len(report.kept)} kept", file=sys.stderr)
    return EXIT_OK


def cmd_erase(args) -> int:
    """Erase one call or a subject's calls from both buckets; then (unless --no-marts or a dry run)
    rebuild the marts as a new file and the trend reports that held them. Prints a JSON summary
    that names calls only by digest."""
    from pipeline.jobs import erasure
    from pipeline.jobs.marts import build_marts
    from pipeline.jobs.trend_report import WINDOW_DAYS, build_trend_report

    settings = _settings(args)
    request = erasure.validate_request({
        "request_id": args.request_id, "requested_by": args.requested_by,
        **({"call_id": args.call_id} if args.call_id is not None else {"subject_id": args.subject}),
    })
    try:
        result = erasure.erase(settings, request, dry_run=args.dry_run, report_window_days=WINDOW_DAYS)
    except erasure.ErasureBusy as exc:
        print(f"callaffect: erase: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    summary = {"erasure": result.to_dict(), "marts": None}
    if not args.dry_run and not args.no_marts:
        summary["marts"] = erasure.finish_pending(settings, build_marts=build_marts, build_report=build_trend_report)
    print(json.dumps(summary, indent=2, default=str))
    return EXIT_OK


def _new_password(from_stdin: bool) -> str:
    """The new account's password: one line of stdin, or typed twice at a prompt (never an argument,
    which would land in the shell history and the process list)."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise ValueError("password: the two entries differ")
    return password


def cmd_users_add(args) -> int:
    from pipeline.storage.reviews import ReviewStore

    account = ReviewStore(_settings(args)).add_account(args.name, args.role, _new_password(args.password_stdin))
    print(f"added {account.username} ({account.role})")
    return EXIT_OK


def cmd_users_list(args) -> int:
    from pipeline.storage.reviews import ReviewStore

    for a in sorted(ReviewStore(_settings(args)).list_accounts(), key=lambda a: a.username):
        print(f"{a.username:<32} {a.role:<8} {a.created_at}{'  disabled' if a.disabled else ''}")
    return EXIT_OK


def cmd_flags_tune(args) -> int:
    from pipeline.jobs import flag_tuning

    report = flag_tuning.tune_flags(_settings(args), args.marts, args.valence_max, args.arousal_min)
    print(flag_tuning.report_json(report) if args.json else flag_tuning.report_table(report))
    return EXIT_OK


def cmd_s3_serve(args) -> int:
    from pipeline.devtools.s3server import serve_forever

    serve_forever(args.port, args.host)
    return EXIT_OK


def cmd_synth(args) -> int:
    from pipeline.devtools.synth.call_sets import generate_demo_set

    for call in generate_demo_set(Path(args.out), n_calls=args.n, seed=args.seed):
        print(call.audio_path)
    return EXIT_OK


def cmd_serve(args) -> int:
    from pipeline.review.server import serve

    settings = _settings(args)
    serve(settings, marts_path=args.marts or settings.marts.duckdb_path, curated_root=args.curated_root,
          host=args.host, port=args.port, secure_cookies=not args.insecure_cookies)
    return EXIT_OK


def cmd_demo(args) -> int:
    from pipeline.devtools.demo import run_demo

    return run_demo(Path(args.workdir), n_calls=args.n_calls, seed=args.seed)


def _eval_failed(exc: Exception) -> int:
    print(f"callaffect eval: error: {exc}", file=sys.stderr)
    return EXIT_ERROR


def cmd_eval_diarization(args) -> int:
    from pipeline.devtools import eval_report

    try:
        report = eval_report.score_diarization_files(args.ref, args.hyp, collar=args.collar,
                                                     skip_overlap=args.skip_overlap, jer=args.jer)
    except (ValueError, OSError) as exc:
        return _eval_failed(exc)
    print(eval_report.diarization_json(report) if args.json else eval_report.diarization_table(report, jer=args.jer))
    return EXIT_OK


def cmd_eval_asr(args) -> int:
    from pipeline.devtools import eval_report

    try:
        report = eval_report.score_asr_files(args.ref, args.hyp)
    except (ValueError, OSError, IndexError) as exc:  # IndexError: an STM line with too few fields
        return _eval_failed(exc)
    print(eval_report.asr_json(report) if args.json else eval_report.asr_table(report))
    return EXIT_OK


def _as_dict(obj):
    import dataclasses

    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callaffect", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, fn, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="TOML settings file (else $CALLAFFECT_CONFIG; env overrides)")
        p.set_defaults(fn=fn)
        return p

    p = add("analyze", cmd_analyze, "analyse one recording (local path or s3:// URI)")
    p.add_argument("media")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--call-id")
    p.add_argument("--metadata", help="call metadata JSON (roles, consent, speaker hints)")

    p = add("batch", cmd_batch, "analyse every raw recording with no committed output, on Ray")
    p.add_argument("--limit", type=int)
    p.add_argument("--dates", help="call dates YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD (both included): only those")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--reprocess", action="store_true",
                       help="every recording of the dates, committed or not (quarantined too); needs --dates")
    which.add_argument("--stale", action="store_true",
                       help="committed calls of the dates analysed with other model/rule versions or settings")
    p.add_argument("--dry-run", action="store_true", help="list the calls it would analyse and why; change nothing")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr even when it is not a terminal")

    marts = sub.add_parser("marts", help="DuckDB marts").add_subparsers(dest="marts_command", required=True)
    p = marts.add_parser("build", help="build the marts into a new DuckDB file and swap it in")
    p.add_argument("--config")
    p.add_argument("--out", help="DuckDB file (default: settings marts.duckdb_path)")
    p.set_defaults(fn=cmd_marts_build)

    report = sub.add_parser("report", help="the trend report").add_subparsers(dest="report_command", required=True)
    p = report.add_parser("build", help="write a day's trend report (HTML) from the marts under the curated root")
    p.add_argument("--config")
    p.add_argument("--day", help="YYYY-MM-DD: the last call date it covers (default: today, UTC)")
    p.set_defaults(fn=cmd_report_build)

    governance = sub.add_parser("governance", help="what was inferred, withheld, erased and deleted").add_subparsers(
        dest="governance_command", required=True)
    p = governance.add_parser("report", help="calls, consents, inferences made and withheld by role and rule, audit "
                                             "completeness, erasures and their latency, retention deletions")
    p.add_argument("--config")
    p.add_argument("--from", dest="date_from", required=True, help="YYYY-MM-DD: first call date (and erasure/deletion day)")
    p.add_argument("--to", dest="date_to", required=True, help="YYYY-MM-DD: last one")
    p.add_argument("--marts", help="DuckDB file (default: settings marts.duckdb_path)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(fn=cmd_governance_report)

    p = add("cost", cmd_cost, "cost per call-minute, CPU and GPU profiles (every figure measured or assumed)")
    p.add_argument("--marts", help="DuckDB marts: stage real-time factors measured in production (fct_stage_metrics)")
    p.add_argument("--bench", help="bench/bench_analyze.py JSON (used without --marts; default: the figures measured here)")
    p.add_argument("--curated-root", help="s3://bucket/prefix/ or a directory: measure bytes and objects stored per call")
    p.add_argument("--utilisation", type=float, help="share of paid node time doing work (default: cost.utilisation)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")

    _add_users_and_flags(sub)

    add("quality-gate", cmd_quality_gate, "run the data-quality gate on newly committed calls")
    p = add("erase", cmd_erase, "erase a call, or every call of a subject, from both buckets and the marts (GDPR Art. 17)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--call-id", help="the call to erase")
    target.add_argument("--subject", help="the subject_id (call metadata) whose calls to erase")
    p.add_argument("--request-id", required=True, help="the request's id (letters, digits, '_', '.', '-'; never the id erased)")
    p.add_argument("--requested-by", required=True, help="who asked: an operator's id or ticket, not the subject's")
    p.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    p.add_argument("--no-marts", action="store_true",
                   help="leave the marts rebuild to the callaffect_erasure DAG's next run")
    add("retention", cmd_retention, "apply the retention limits: raw media, snippets, utterance text, affect windows, aggregates")

    s3 = sub.add_parser("s3", help="local S3 endpoint").add_subparsers(dest="s3_command", required=True)
    p = s3.add_parser("serve", help="run moto's S3 server on 127.0.0.1 until stopped")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(fn=cmd_s3_serve)

    p = add("synth", cmd_synth, "generate synthetic support calls with reference RTTM/STM")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)

    p = add("serve", cmd_serve, "the QA review app on the marts (and the curated root's review record and snippets)")
    p.add_argument("--marts", help="DuckDB file (default: settings marts.duckdb_path)")
    p.add_argument("--curated-root", help="s3://bucket/prefix/ or a local directory (default: the configured curated bucket)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--insecure-cookies", action="store_true", help="cookies over plain HTTP (localhost only)")

    p = add("demo", cmd_demo, "run the nightly job end to end on the local stack with demo calls")
    p.add_argument("--workdir", default="data/demo")
    p.add_argument("--n-calls", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)

    _add_eval(sub)
    return parser


def _add_users_and_flags(sub) -> None:
    """``callaffect users add|list`` (review app accounts) and ``callaffect flags tune``."""
    users = sub.add_parser("users", help="review app accounts").add_subparsers(dest="users_command", required=True)
    p = users.add_parser("add", help="add an account (the password is prompted for, or read from stdin)")
    p.add_argument("--config")
    p.add_argument("name", help="user name: lower-case letters, digits, '_', '.', '-'")
    p.add_argument("--role", required=True, choices=("reviewer", "lead", "admin"))
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(fn=cmd_users_add)
    p = users.add_parser("list", help="list the accounts")
    p.add_argument("--config")
    p.set_defaults(fn=cmd_users_list)

    flags = sub.add_parser("flags", help="QA flag rule").add_subparsers(dest="flags_command", required=True)
    p = flags.add_parser("tune", help="what other frustration thresholds would flag, against the QA verdicts "
                                      "(reads the marts, changes nothing)")
    p.add_argument("--config")
    p.add_argument("--marts", help="DuckDB file (default: settings marts.duckdb_path)")
    p.add_argument("--valence-max", type=float, nargs="+", action="extend", metavar="V",
                   help="valence_max values to try besides the grid around the configured one")
    p.add_argument("--arousal-min", type=float, nargs="+", action="extend", metavar="A",
                   help="arousal_min values to try besides the grid around the configured one")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(fn=cmd_flags_tune)


def _add_eval(sub) -> None:
    """``callaffect eval diarization|asr``: ``--ref`` and ``--hyp`` may be repeated
    (``--ref a --hyp a' --ref b --hyp b'``) or take several files each."""
    parser = sub.add_parser("eval", help="score diarization (DER) or transcripts (WER) against references",
                            description="`callaffect eval`: score diarization (DER) and transcripts (WER) "
                                        "against references.",
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


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    from pipeline import log_redaction

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log_redaction.install()
    try:
        return args.fn(args)
    except Exception as exc:  # noqa: BLE001 - ops read one line; -v logs the traceback (redacted)
        logging.getLogger(__name__).debug("command failed", exc_info=True)
        print(f"callaffect: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
