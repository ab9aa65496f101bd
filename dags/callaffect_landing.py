"""Landing: notice raw recordings that have no committed output yet and announce them.

On ``schedule.landing_cron`` (every 30 minutes) a deferrable sensor waits (in the triggerer, not
a worker slot) until pending recordings exist; ``register`` logs them and emits an event on the
raw recordings asset, which starts the nightly DAG early when ``schedule.start_on_landing``. A run that finds nothing by its timeout ends skipped, not failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, CronTriggerTimetable, dag, task

from pipeline import airflow_tasks as t

RAW_RECORDINGS = Asset(t.raw_recordings_uri())
_when = t.schedules()


@dag(
    dag_id="callaffect_landing",
    schedule=CronTriggerTimetable(_when.landing_cron, timezone=_when.timezone),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["callaffect"],
)
def callaffect_landing():
    pending = t.PendingRecordingsSensor(
        task_id="wait_for_recordings",
        poke_interval=60,
        timeout=int(timedelta(minutes=25).total_seconds()),
        soft_fail=True,
    )

    @task(outlets=[RAW_RECORDINGS])
    def register(pending: list[dict], *, outlet_events=None) -> dict:
        registered = t.register_recordings(pending)
        outlet_events[RAW_RECORDINGS].extra = registered
        return registered

    register(pending.output)


callaffect_landing()
