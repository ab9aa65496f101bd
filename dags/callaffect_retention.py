"""Retention: one age limit per kind of data (raw media, review snippets, utterance text, affect
windows, aggregates; ``retention.*``), each deletion or rewrite logged under ``_ops/retention/``.

Never touches media of a call that is not processed, nor derived data of a call not yet gated.
The task returns the report, with the per-kind counts under ``counts``.
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
