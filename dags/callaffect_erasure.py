"""Erasure on request: requests dropped as ``<ops_prefix>erasure/requests/<request_id>.json`` in
the curated bucket are erased from both buckets, then the marts are rebuilt once as a new file
and the deleted trend reports rebuilt (pipeline.jobs.erasure).

Runs on ``schedule.erasure_cron`` (hourly). ``finish`` runs whatever ``erase`` did
(``all_done``): requests erased before a failure still get their marts rebuilt.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronTriggerTimetable, dag, task

from pipeline import airflow_tasks as t


_when = t.schedules()


@dag(
    dag_id="callaffect_erasure",
    schedule=CronTriggerTimetable(_when.erasure_cron, timezone=_when.timezone),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["callaffect"],
)
def callaffect_erasure():
    @task
    def erase() -> dict:
        return t.erase_requested()

    @task(trigger_rule="all_done")
    def finish() -> dict:
        return t.finish_erasures()

    erase() >> finish()


callaffect_erasure()
