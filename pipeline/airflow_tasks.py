"""What the Airflow tasks do: thin bodies over the pipeline modules, so the DAG files hold wiring only.

Every function takes and returns JSON-serialisable values (they travel as XCom) and reads its
configuration itself with ``load_settings()`` (file + ``CALLAFFECT_*`` environment of the worker):
Settings never travel through XCom. Heavy modules (boto3, Ray, DuckDB) are imported inside the
functions, so parsing a DAG file that imports this module stays cheap. Every task is idempotent:
the batch skips committed calls, the gate re-checks, the marts are rebuilt and swapped whole.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from pipeline.settings import load_settings

log = logging.getLogger(__name__)

# None: the batch's real analysis (pipeline.call.analyze.analyze_call). dag.test() runs tasks in the
# calling process, so a test may swap in a fast stand-in here; production never sets it.
ANALYZE_FN: Callable[..., Any] | None = None

# Flags listed per report: enough to read, small enough for an XCom.
_REPORT_FLAGS_MAX = 200


def _task_settings():
    """The worker's settings, with credentials masked in whatever this task logs (botocore at
    INFO at most, whatever Airflow's logging level): for the task bodies, not DAG parsing."""
    from pipeline import log_redaction

    log_redaction.install()
    return load_settings()


def schedules():
    """The DAGs' schedule settings (cheap: a file and the environment, no I/O beyond that)."""
    return load_settings().schedule


def raw_recordings_uri() -> str:
    """The URI of the raw recordings asset: what the landing DAG announces and the nightly DAG awaits."""
    s3 = load_settings().s3
    return f"s3://{s3.raw_bucket}/{s3.raw_prefix.strip('/')}"


# --- landing ---------------------------------------------------------------------------------


def events_settings():
    """The landing DAG's event settings (cheap: read when the DAG file is parsed)."""
    return load_settings().events


def raw_bucket_and_prefix() -> tuple[str, str]:
    s3 = load_settings().s3
    return s3.raw_bucket, s3.raw_prefix


def landing_queue_trigger():
    """The landing asset's watcher trigger: common-messaging's MessageQueueTrigger, which hands
    scheme ``sqs`` to the Amazon provider's SqsSensorTrigger (the class the pinned providers
    accept for an AssetWatcher). It deletes the messages it yields: from then on the asset event
    holds them, and the nightly listing covers a run that never comes."""
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    settings = load_settings()
    events = settings.events
    return MessageQueueTrigger(
        scheme="sqs",
        sqs_queue=events.queue_url,
        aws_conn_id=events.aws_conn_id,
        region_name=settings.s3.region,
        max_messages=10,  # SQS's maximum per receive
        wait_time_seconds=events.receive_wait_s,
        waiter_delay=events.poll_interval_s,
    )


def landed_since_previous_run(files: list[dict], **context: Any) -> bool:
    """check_fn of the landing S3KeySensor: has anything landed since the last successful run
    began? (Never run: anything at all.) What is pending is decided by the listing after it."""
    since = context.get("prev_start_date_success") or None  # a lazy proxy of None is not None
    if since is None:
        return bool(files)
    # S3 times are whole seconds: an object put in the second the last run began, after it began,
    # reads as older than that start. Such an object counts (the listing skips what is done).
    since = since.replace(microsecond=0)
    return any(f["LastModified"] >= since for f in files)


def _announce(report) -> dict:
    """A landing report -> the raw-recordings asset event's extra; skipped when nothing is new,
    so duplicate events start nothing."""
    from airflow.sdk.exceptions import AirflowSkipException

    summary = {k: len(v) if isinstance(v, list) else v for k, v in report.to_dict().items() if k != "registered"}
    log.info("landing: %s", json.dumps(summary, sort_keys=True))
    if not report.registered:
        raise AirflowSkipException(f"no new recording to announce ({json.dumps(summary, sort_keys=True)})")
    return {"count": len(report.registered), "call_ids": sorted(r["call_id"] for r in report.registered)[:100]}


def register_queued(event_extras: list, messages: list | None = None) -> dict:
    """Register what the queue announced: the payloads of the asset events that started this run,
    plus ``messages`` given by hand (notifications replayed from the dead-letter queue). A run
    with neither (triggered by hand) registers the pending recordings of a listing."""
    from pipeline.jobs.landing import register_messages, trigger_messages

    settings = _task_settings()
    queued = trigger_messages(event_extras) + list(messages or [])
    if not queued:
        return _register_pending(settings)
    return _announce(register_messages(settings, queued))


def register_listed() -> dict:
    """Register the pending recordings of a listing (the landing DAG without a queue)."""
    return _register_pending(_task_settings())


def _register_pending(settings) -> dict:
    from pipeline.jobs.batch import discover_pending
    from pipeline.jobs.landing import register_pending

    return _announce(register_pending(settings, discover_pending(settings)))


# --- nightly ---------------------------------------------------------------------------------


def discover_batches(dates: str | None = None, mode: str = "pending") -> list[list[dict]]:
    """The recordings to analyse cut into batches of ``ray.max_calls_per_batch``: one mapped task each.

    By default (the nightly run) every pending recording; the run parameters ``dates``
    ("YYYY-MM-DD" or "YYYY-MM-DD..YYYY-MM-DD") and ``mode`` (pending, reprocess, stale) make it a
    backfill (pipeline.jobs.batch.select_recordings; reprocess needs dates). Calls that cannot be
    analysed as they are (a call id under two dates, two media files for one call) are
    quarantined here with their reason; raw objects that are not recordings are listed as
    ignored under the ops prefix; calls whose raw media is gone are logged as not reprocessable."""
    from pipeline.jobs.batch import DateRange, recording_to_dict, select_recordings, settle_discovery

    settings = _task_settings()
    mode = mode or "pending"
    days = DateRange.parse(dates) if dates else None
    if mode == "reprocess" and days is None:
        raise ValueError("mode reprocess needs dates")
    selection = select_recordings(settings, days, mode)
    found = selection.discovery
    if found is not None:
        for call_id, reason in settle_discovery(settings, found).items():
            log.warning("quarantined at discovery: %s: %s", call_id, reason)
        for item in found.ignored:
            log.warning("ignored raw object: %s", item.reason)
    for call_id, reason in selection.not_reprocessable.items():
        log.warning("%s %s", call_id, reason)
    pending = [recording_to_dict(r) for r, _ in selection.selected]
    size = settings.ray.max_calls_per_batch
    batches = [pending[i : i + size] for i in range(0, len(pending), size)]
    log.info("%d recording(s) (%s) in %d batch(es)", len(pending), mode, len(batches))
    return batches


def analyze_batch(batch: list[dict], mode: str = "pending") -> dict:
    """Run one batch on Ray; committed calls are skipped, so a retry redoes only what is missing.

    Returns the batch report plus each call's date (the report knows only call ids). A call
    that could not be committed does not fail this task: it is counted and retried next run
    (quarantined after ``ray.max_call_failures``), and ``check_run`` fails the DAG run for it.
    """
    from pipeline.jobs.batch import recording_from_dict, run_batch

    recordings = [recording_from_dict(rec) for rec in batch]
    # A backfill's calls are committed already: they are analysed again (reprocess), not skipped.
    report = run_batch(_task_settings(), recordings=recordings, analyze_fn=ANALYZE_FN,
                       reprocess=(mode or "pending") != "pending")
    for call_id, error in report.failed.items():
        log.warning("%s not committed, retried next run: %s", call_id, error)
    return {"report": report.to_dict(), "call_dates": {r.call_id: r.call_date for r in recordings}}


def quality_gate() -> dict:
    """Gate every committed ok call that has not been checked yet (this run's, and any a failed
    run left behind); failing calls are quarantined in their manifests, so the marts skip them."""
    from pipeline.jobs.quality_gate import gate_committed_calls

    results = gate_committed_calls(_task_settings())
    failed = {call_id: r.failures for call_id, r in results if not r.passed}
    for call_id, failures in failed.items():
        log.warning("quality gate quarantined %s: %s", call_id, "; ".join(failures))
    log.info("quality gate: %d call(s) checked, %d passed", len(results), len(results) - len(failed))
    return {"checked": len(results), "passed": len(results) - len(failed), "failed": failed}


def build_marts() -> dict:
    """Rebuild the DuckDB marts from every loadable call and swap the file in."""
    from pipeline.jobs.marts import build_marts as build

    return dataclasses.asdict(build(_task_settings()))


def trend_report(marts: dict | None) -> dict:
    """Write the trend report (pipeline.jobs.trend_report) from the marts this run built, under the
    curated root they were built from. Skipped when the build failed: an older file would pass for
    tonight's data."""
    from airflow.sdk.exceptions import AirflowSkipException

    from pipeline.jobs.trend_report import build_trend_report

    if marts is None:
        raise AirflowSkipException("no marts were built: no trend report")
    key = build_trend_report(_task_settings(), marts_path=marts["path"], curated_root=marts["curated_root"])
    return {"key": key}


def nightly_report(discovered: list[list[dict]] | None, batches: list[dict | None], gate: dict | None,
                   marts: dict | None) -> dict:
    """What this run did, read back from the marts: per call its status (after the gate), speakers
    and flags. ``batches`` are analyze_batch's results (none when nothing was pending; a batch
    task that failed has none). Calls not committed and tasks that failed are listed."""
    results = [b for b in batches or [] if b]
    calls: dict[str, str] = {}  # call id -> call date, of every call this run's batches settled
    not_committed: dict[str, str] = {}
    for batch in results:
        report = batch["report"]
        not_committed.update(report["failed"])
        for call_id in [*report["ok"], *report["quarantined"], *report["skipped"]]:
            calls[call_id] = batch["call_dates"][call_id]
    summary: dict[str, Any] = {
        "calls": [],
        "processed": [],
        "quarantined": {},
        "not_committed": not_committed,  # retried next run
        "batches_failed": max(0, len(discovered or []) - len(results)),
        "flags": [],  # the strongest first, at most _REPORT_FLAGS_MAX of flag_count
        "flag_count": 0,
        "gate": gate,
        "marts": {k: marts[k] for k in ("path", "calls_loaded", "calls_quarantined", "tables")} if marts else None,
    }
    if not calls or marts is None:
        log.info("nothing was pending" if marts else "no marts were built")
        return summary
    status, speakers, flags, faces = _query_run_calls(marts["path"], calls)
    _add_calls(summary, status, _group_by_call(speakers, ("speaker", "role", "talk_s")),
               _group_by_call(faces, ("track_id", "speaker", "role", "link_confidence", "on_screen_s")))
    keys = ("call_id", "speaker", "role", "start_s", "end_s", "score", "confidence")
    summary["flags"] = [dict(zip(keys, row)) for row in flags[:_REPORT_FLAGS_MAX]]
    summary["flag_count"] = len(flags)
    log.info(
        "%d call(s) loaded, %d quarantined, %d flag(s)",
        len(summary["processed"]), len(summary["quarantined"]), len(flags),
    )
    return summary


def _query_run_calls(marts_path: str, calls: dict[str, str]) -> tuple[list, list, list, list]:
    """Rows of the marts for this run's calls: status, speakers, flags (strongest first), faces."""
    import pyarrow as pa

    from pipeline.jobs.marts import open_marts

    # Calls are identified by (date, id); a DuckDB table of them keeps the queries plain joins.
    with open_marts(load_settings(), marts_path) as con:
        run = pa.table({"call_id": list(calls), "call_date": [date.fromisoformat(d) for d in calls.values()]})
        con.register("run_calls", run)
        status = con.execute(
            """select s.call_id, s.call_date::varchar, s.status, s.reason, s.loaded, s.duration_s, d.num_speakers
               from fct_call_status s join run_calls r using (call_id, call_date)
               left join dim_calls d using (call_id, call_date) order by s.call_id"""
        ).fetchall()
        speakers = con.execute(
            """select call_id, speaker, any_value(role), round(sum(end_s - start_s), 1)
               from fct_speaker_turns join run_calls using (call_id, call_date)
               group by call_id, speaker order by call_id, speaker"""
        ).fetchall()
        flags = con.execute(
            """select call_id, speaker, role, round(start_s, 2), round(end_s, 2), round(score, 3), round(confidence, 3)
               from mart_qa_flags join run_calls using (call_id, call_date) order by score_rank"""
        ).fetchall()
        faces = con.execute(
            """select call_id, track_id, speaker, role, round(link_confidence, 2), round(on_screen_s, 1)
               from fct_face_tracks join run_calls using (call_id, call_date) order by call_id, track_id"""
        ).fetchall()
    return status, speakers, flags, faces


def _group_by_call(rows: list[tuple], keys: tuple[str, ...]) -> dict[str, list[dict]]:
    """Rows that start with a call id -> per call id, the rest of each row as a dict of ``keys``."""
    grouped: dict[str, list[dict]] = {}
    for call_id, *values in rows:
        grouped.setdefault(call_id, []).append(dict(zip(keys, values)))
    return grouped


def _add_calls(summary: dict, status: list[tuple], speakers: dict[str, list[dict]], faces: dict[str, list[dict]]) -> None:
    """One entry per call in ``summary["calls"]``; loaded and quarantined calls also listed apart."""
    for call_id, call_date, status_, reason, loaded, duration_s, num_speakers in status:
        summary["calls"].append(
            {
                "call_id": call_id,
                "call_date": call_date,
                "status": status_,
                "reason": reason,
                "loaded": bool(loaded),
                "duration_s": duration_s,
                "num_speakers": num_speakers,
                "speakers": speakers.get(call_id, []),
                "faces": faces.get(call_id, []),
            }
        )
        if loaded:
            summary["processed"].append(call_id)
        elif status_ == "quarantined":
            summary["quarantined"][call_id] = reason


def check_run(summary: dict | None, trend: dict | None = None) -> dict:
    """Fail the DAG run when anything failed: after the gate, marts, trend report and report have
    done what they could for the calls that did commit."""
    from airflow.sdk.exceptions import AirflowFailException

    if summary is None:
        raise AirflowFailException("the run's report is missing: see the report task")
    problems = []
    if summary["not_committed"]:
        problems.append(f"{len(summary['not_committed'])} call(s) not committed (retried next run): "
                        + ", ".join(sorted(summary["not_committed"])[:20]))
    if summary["batches_failed"]:
        problems.append(f"{summary['batches_failed']} batch task(s) failed")
    if summary["gate"] is None:
        problems.append("the quality gate failed")
    if summary["marts"] is None:
        problems.append("the marts build failed")
    elif trend is None:
        problems.append("the trend report failed")
    if problems:
        raise AirflowFailException("; ".join(problems))
    return {"ok": True}


# --- retention -------------------------------------------------------------------------------


def apply_retention() -> dict:
    """Apply every retention limit (raw media, snippets, utterance text, affect windows,
    aggregates); each deletion or rewrite is in the JSON Lines log the report names."""
    from pipeline.jobs.retention import run_retention

    report = run_retention(_task_settings())
    # Counts only: keys name calls, and the log under _ops/retention/ (which erasure cleans) has them.
    for kind, n in report.counts.items():
        log.info("retention %s: %d object(s) %s", kind, n, "would go (dry run)" if report.dry_run else "deleted or rewritten")
    log.info("retention: %d item(s) past their age kept, log %s", len(report.kept), report.log_key)
    # XCom lives in Airflow's database, which erasure cannot reach: no key or call id goes there.
    return {"dry_run": report.dry_run, "counts": report.counts, "kept": len(report.kept), "log_key": report.log_key}


# --- erasure ---------------------------------------------------------------------------------


def erase_requested() -> dict:
    """Work through the erasure requests under ``<ops_prefix>erasure/requests/`` (pipeline.jobs.erasure):
    each valid one erased from both buckets and moved to ``done/`` (its record), each invalid one
    rejected with its reason. Request ids and counts only: no call or subject id reaches XCom or logs."""
    from pipeline.jobs import erasure
    from pipeline.jobs.trend_report import WINDOW_DAYS

    report = erasure.process_requests(_task_settings(), report_window_days=WINDOW_DAYS)
    log.info("erasure: %d request(s) done, %d rejected, %d waiting for a call under analysis",
             len(report.done), len(report.rejected), len(report.busy))
    return report.to_dict()


def finish_erasures() -> dict:
    """One marts rebuild (a new DuckDB file) for every request erased from the buckets but not
    yet from the marts, checked free of their calls; then the trend reports they deleted are
    rebuilt and each erasure record completed. Skipped when no erasure waits."""
    from airflow.sdk.exceptions import AirflowSkipException

    from pipeline.jobs import erasure
    from pipeline.jobs.marts import build_marts as build
    from pipeline.jobs.trend_report import build_trend_report

    result = erasure.finish_pending(_task_settings(), build_marts=build, build_report=build_trend_report)
    if not result["requests"]:
        raise AirflowSkipException("no erasure waits for the marts")
    return result
