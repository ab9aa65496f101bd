"""S3 events start the work: a real bucket notification to a real SQS queue on moto's server, the
landing DAG's own watcher trigger (common-messaging -> the Amazon provider's SQS trigger), the
landing and nightly DAGs run with dag.test(), and each recording processed once."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from types import SimpleNamespace

from airflow_env import use_settings
from stack_helpers import analyses_of, tables_analyze

from pipeline.devtools.demo import DAGS_FOLDER, run_dag, task_result
from pipeline.devtools.local_events import create_landing_queue, queued_messages, receive_trigger_events
from pipeline.jobs.landing import trigger_messages
from pipeline.settings import EventsSettings, RaySettings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore

DAY = "2026-11-03"


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_recordings_announced_through_sqs_are_registered_and_processed_once(settings, ray_local, monkeypatch, airflow_home):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    queue_url = create_landing_queue(settings)
    settings = use_settings(monkeypatch, dataclasses.replace(
        settings,
        ray=RaySettings(local_num_cpus=2),
        events=EventsSettings(queue_url=queue_url, receive_wait_s=1, poll_interval_s=1, sidecar_wait_s=600),
    ))
    monkeypatch.setattr("pipeline.airflow_tasks.ANALYZE_FN", tables_analyze)
    client = object_store.s3_client(settings.s3)
    raw = f"{settings.s3.raw_prefix}{DAY}/"

    def put(name: str, body: bytes = b"RIFF audio") -> None:
        object_store.put_bytes(client, settings.s3.raw_bucket, raw + name, body)

    # With a queue, the landing DAG is scheduled on an asset whose watcher polls that queue.
    landing = DagBag(dag_folder=str(DAGS_FOLDER)).dags["callaffect_landing"]
    (queue_asset,) = landing.timetable.asset_condition.objects
    (watcher,) = queue_asset.watchers
    assert isinstance(watcher.trigger.trigger, SqsSensorTrigger)
    assert watcher.trigger.serialize()[1]["sqs_queue"] == queue_url

    # Wave 1: a complete call, a recording whose sidecar is late, a sidecar before its recording
    # (out of order), the complete call's recording uploaded twice, and a file that is no recording.
    put("complete.json", b'{"consent": {}}'), put("complete.wav")
    put("late-meta.wav")
    put("early-meta.json", b"{}"), put("early-meta.wav")
    put("complete.wav")  # a retried upload: a second, duplicate event
    object_store.put_bytes(client, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}README.txt", b"not a call")

    messages = trigger_messages(receive_trigger_events(watcher.trigger, idle_s=4))
    assert len(messages) == 8  # S3's test event, then one per object created
    assert queued_messages(settings, queue_url) == 0  # the trigger deleted what it handed over

    # The run the asset event would start, given the same messages as run parameters.
    first = run_dag("callaffect_landing", conf={"messages": messages})
    assert _states(first) == {"register": "success"}
    assert task_result(first, "register") == {"count": 2, "call_ids": ["complete", "early-meta"]}

    # Wave 2: the late sidecar lands; its event reaches the register task as Airflow's triggerer
    # stores it in the asset event (extra {"from_trigger": True, "payload": <trigger payload>}).
    put("late-meta.json", b"{}")
    (payload,) = receive_trigger_events(watcher.trigger, idle_s=4)
    outlet_events = defaultdict(SimpleNamespace)
    register = landing.task_dict["register"].python_callable
    second = register(triggering_asset_events={queue_asset: [SimpleNamespace(extra={"from_trigger": True, "payload": payload})]},
                      params={"messages": []}, outlet_events=outlet_events)
    assert second == {"count": 1, "call_ids": ["late-meta"]}
    assert [e.extra for e in outlet_events.values()] == [second]

    nightly = run_dag("callaffect_nightly")
    assert nightly.state == "success"
    assert sorted(analyses_of(settings)) == ["complete", "early-meta", "late-meta"]
    manifests = {m.call_id: m.commit_id for _, m in CuratedStore(settings, client=client).manifests()}
    assert set(manifests) == {"complete", "early-meta", "late-meta"}

    # Wave 3: duplicates after processing (another retried upload, the sidecar rewritten).
    put("complete.wav"), put("complete.json", b'{"consent": {}}')
    third = run_dag("callaffect_landing", conf={"messages": trigger_messages(receive_trigger_events(watcher.trigger, idle_s=4))})
    assert _states(third) == {"register": "skipped"}  # nothing new: no asset event, no early nightly
    again = run_dag("callaffect_nightly")
    assert again.state == "success"
    assert sorted(analyses_of(settings)) == ["complete", "early-meta", "late-meta"]  # nothing processed twice
    assert {m.call_id: m.commit_id for _, m in CuratedStore(settings, client=client).manifests()} == manifests
    registrations = [o.key for o in object_store.list_objects(client, settings.s3.curated_bucket, f"{settings.s3.ops_prefix}landing/")]
    assert len(registrations) == 3 and json.dumps(registrations).count("README") == 0
