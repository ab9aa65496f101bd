"""Nightly: pending recordings -> batches analysed on Ray -> quality gate -> DuckDB marts -> trend
report -> report.

Runs on ``schedule.nightly_cron`` (02:00 UTC), and also whenever the landing DAG announces new
recordings if ``schedule.start_on_landing`` is set. Each batch is a mapped task (one per
``ray.max_calls_per_batch`` calls). The gate, marts, trend report and report run whatever
happened upstream (``all_done``): with nothing pending, or with a batch that failed, the calls
that did commit are still gated and loaded. ``check_run`` then fails the run if a call was not
committed or a task failed, so the failure shows without holding the other calls back.

Run parameters (trigger with a config): ``dates`` ("YYYY-MM-DD" or "YYYY-MM-DD..YYYY-MM-DD";
none: every date) and ``mode`` (``pending``: not committed yet, the nightly default;
``reprocess``: every recording of the dates; ``stale``: committed under other model versions,
rule version or settings), as ``callaffect batch --dates ... --reprocess|--stale``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from pipeline import airflow_tasks as t


_when = t.schedules()
_nightly = CronTriggerTimetable(_when.nightly_cron, timezone=_when.timezone)


@dag(
    dag_id="callaffect_nightly",
    schedule=(
        AssetOrTimeSchedule(timetable=_nightly, assets=[Asset(t.raw_recordings_uri())])
        if _when.start_on_landing
        else _nightly
    ),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    # Runs overlap nothing: a second run would only find what the first is already analysing.
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["callaffect"],
    params={
        "dates": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}(\.\.\d{4}-\d{2}-\d{2})?$",
                       description="call dates YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD; none: every date"),
        "mode": Param("pending", enum=["pending", "reprocess", "stale"],
                      description="pending (nightly), reprocess (every recording of the dates), stale"),
    },
)
def callaffect_nightly():
    @task
    def discover(params: dict | None = None) -> list[list[dict]]:
        return t.discover_batches(params["dates"], params["mode"])

    # Concurrent batches pay off on a shared Ray cluster (ray.address); locally each would start its own.
    @task(max_active_tis_per_dagrun=4)
    def analyze_batch(batch: list[dict], params: dict | None = None) -> dict:
        return t.analyze_batch(batch, params["mode"])

    @task(trigger_rule="all_done")
    def quality_gate() -> dict:
        return t.quality_gate()

    @task(trigger_rule="all_done")
    def build_marts() -> dict:
        return t.build_marts()

    @task(trigger_rule="all_done")
    def trend_report(marts: dict) -> dict:
        return t.trend_report(marts)

    @task(trigger_rule="all_done")
    def report(discovered: list[list[dict]], batches: list[dict], gate: dict, marts: dict) -> dict:
        # A slice fetches every batch's result in one request (empty when the batch was skipped).
        return t.nightly_report(discovered, batches[:], gate, marts)

    @task(trigger_rule="all_done")
    def check_run(summary: dict, trend: dict) -> dict:
        return t.check_run(summary, trend)

    discovered = discover()
    batches = analyze_batch.expand(batch=discovered)
    gate, marts = quality_gate(), build_marts()
    batches >> gate >> marts
    summary = report(discovered, batches, gate, marts)
    trend = trend_report(marts)
    trend >> summary
    check_run(summary, trend)


callaffect_nightly()
