"""Retention: delete raw media of committed calls past ``retention.raw_max_age_days``, log each deletion.

Never touches a recording without a committed manifest; derived tables stay.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import CronTriggerTimetable, dag, task

from pipeline import airflow_tasks as t


_when = t.schedules()


@dag(
    dag_id="callaffect_retention",
    schedule=CronTriggerTimetable(_when.retention_cron, timezone=_when.timezone),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["callaffect"],
)
def callaffect_retention():
    @task
    def apply_retention() -> dict:
        return t.apply_retention()

    apply_retention()


callaffect_retention()
