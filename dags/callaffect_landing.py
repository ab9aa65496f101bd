"""Landing: new raw recordings are registered once and announced on the raw recordings asset.

With ``events.queue_url`` set, S3 ObjectCreated notifications reach the landing queue
(infra/terraform/sqs.tf) and an AssetWatcher on it (the common-messaging queue trigger, run by
the triggerer) starts this DAG; ``register`` reads the notifications of the events that started
the run (and ``messages`` given by hand, to replay the dead-letter queue). Without a queue it
runs on ``schedule.landing_cron``: the Amazon provider's S3KeySensor (reschedule mode: no worker
slot held between pokes) waits for objects newer than the last successful run, and ``register``
registers what a listing finds pending. Either way each recording is announced once
(pipeline.jobs.landing), which starts the nightly DAG early when ``schedule.start_on_landing``.
A run with nothing new ends skipped, not failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import Asset, AssetWatcher, CronTriggerTimetable, Param, dag, task

from pipeline import airflow_tasks as t

RAW_RECORDINGS = Asset(t.raw_recordings_uri())
_when = t.schedules()
_events = t.events_settings()
LANDING_QUEUE = (
    Asset(name="callaffect_landing_queue",
          watchers=[AssetWatcher(name="callaffect_landing_queue_watcher", trigger=t.landing_queue_trigger())])
    if _events.queue_url
    else None
)


@dag(
    dag_id="callaffect_landing",
    schedule=[LANDING_QUEUE] if LANDING_QUEUE else CronTriggerTimetable(_when.landing_cron, timezone=_when.timezone),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["callaffect"],
    params={
        "messages": Param([], type="array",
                          description="S3 notification messages to register, e.g. redriven from the dead-letter queue"),
    },
)
def callaffect_landing():
    if LANDING_QUEUE:
        @task(outlets=[RAW_RECORDINGS])
        def register(triggering_asset_events=None, params: dict | None = None, *, outlet_events=None) -> dict:
            extras = [e.extra for e in triggering_asset_events[LANDING_QUEUE]] if triggering_asset_events else []
            registered = t.register_queued(extras, params["messages"])
            outlet_events[RAW_RECORDINGS].extra = registered
            return registered

        register()
        return

    raw_bucket, raw_prefix = t.raw_bucket_and_prefix()
    landed = S3KeySensor(
        task_id="wait_for_recordings",
        bucket_name=raw_bucket,
        bucket_key=f"{raw_prefix}*",
        wildcard_match=True,
        metadata_keys=["Key", "LastModified"],
        check_fn=t.landed_since_previous_run,
        aws_conn_id=_events.aws_conn_id,
        mode="reschedule",
        poke_interval=60,
        timeout=int(timedelta(minutes=25).total_seconds()),
        soft_fail=True,
    )

    @task(outlets=[RAW_RECORDINGS])
    def register(*, outlet_events=None) -> dict:
        registered = t.register_listed()
        outlet_events[RAW_RECORDINGS].extra = registered
        return registered

    landed >> register()


callaffect_landing()
