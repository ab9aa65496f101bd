"""The landing queue on a local stack (moto's server): what infra/terraform declares in AWS, and
what the triggerer does with it, for the demo and the tests.

- :func:`create_landing_queue`: an SQS queue and the raw bucket's ObjectCreated notification
  to it (prefix filter, as ``aws_s3_bucket_notification`` in infra/terraform/sqs.tf).
- :func:`aws_connection_env`: the Airflow connection the queue trigger and the S3 sensor use,
  as an ``AIRFLOW_CONN_*`` variable pointing at the local endpoint.
- :func:`receive_trigger_events`: runs a trigger (the landing DAG's watcher trigger) as the
  triggerer would, until the queue has nothing more, and returns the events' payloads.
"""

from __future__ import annotations

import asyncio
import json

from pipeline.settings import Settings
from pipeline.storage import object_store


def _sqs_client(settings: Settings):
    return object_store.aws_client(settings.s3, "sqs")


def create_landing_queue(settings: Settings, name: str = "callaffect-landing") -> str:
    """Create the queue (idempotent) and notify it of every object created under the raw prefix.
    Returns the queue URL (for ``events.queue_url``)."""
    sqs = _sqs_client(settings)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client = object_store.s3_client(settings.s3)
    client.put_bucket_notification_configuration(
        Bucket=settings.s3.raw_bucket,
        NotificationConfiguration={"QueueConfigurations": [{
            "Id": "raw-recordings-to-landing",
            "QueueArn": arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": settings.s3.raw_prefix}]}},
        }]},
    )
    return url


def queued_messages(settings: Settings, queue_url: str) -> int:
    """Messages in the queue, visible or in flight (SQS's approximate counts)."""
    attrs = _sqs_client(settings).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def aws_connection_env(settings: Settings) -> dict[str, str]:
    """``AIRFLOW_CONN_<events.aws_conn_id>``: the local endpoint, its region and the credentials
    the boto3 clients use (moto accepts any)."""
    access_key, secret, token = object_store.credentials(settings.s3)
    extra = {"region_name": settings.s3.region}
    if settings.s3.endpoint_url:
        extra["endpoint_url"] = settings.s3.endpoint_url
    if token:
        extra["aws_session_token"] = token
    conn = {"conn_type": "aws", "login": access_key, "password": secret, "extra": extra}
    return {f"AIRFLOW_CONN_{settings.events.aws_conn_id.upper()}": json.dumps(conn)}


def receive_trigger_events(trigger, idle_s: float) -> list[dict]:
    """Run ``trigger`` again and again, as the triggerer runs an asset watcher's trigger, until a
    run yields nothing for ``idle_s`` seconds; the payloads of the events it yielded."""

    async def receive() -> list[dict]:
        payloads = []
        while True:
            try:
                event = await asyncio.wait_for(anext(trigger.run()), timeout=idle_s)
            except (TimeoutError, StopAsyncIteration):
                return payloads
            payloads.append(event.payload)

    return asyncio.run(receive())
