"""Landing (pipeline.jobs.landing): S3 notifications -> recordings registered once, on moto's S3."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from pipeline.clock import utc_now
from pipeline.jobs.batch import discover_pending
from pipeline.jobs.landing import ObjectCreated, parse_messages, register, register_messages, register_pending, trigger_messages
from pipeline.manifest import CallManifest
from pipeline.settings import EventsSettings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore

DAY = "2026-11-02"


def notification(*records: tuple[str, str], bucket: str = "raw") -> dict:
    """An SQS message as S3 sends it: (event name, form-encoded key) records."""
    body = {"Records": [{"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 5, "eTag": "abc"}}}
                        for name, key in records]}
    return {"MessageId": "m", "ReceiptHandle": "r", "Body": json.dumps(body)}


def test_messages_are_read_as_s3_sends_them_and_anything_else_is_counted_not_raised():
    sns = {"Type": "Notification", "Message": json.dumps(json.loads(notification(("ObjectCreated:Copy", "recordings/x/c.wav"))["Body"]))}
    messages = [
        notification(("ObjectCreated:Put", "recordings/2026-11-02/call+one%2B2.wav"), ("ObjectRemoved:Delete", "recordings/gone.wav")),
        {"Body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "raw"})},
        {"Body": json.dumps(sns)},
        {"Body": "not json {"},
        {"Body": json.dumps([1, 2])},
        {"Body": json.dumps({"Records": "many"})},
        {"Body": json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}]})},
        {"Body": json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "raw"}, "object": {"key": "k", "size": "huge"}}}]})},
    ]
    events, unreadable = parse_messages(messages)
    assert events == [
        ObjectCreated("raw", "recordings/2026-11-02/call one+2.wav", 5, "abc"),  # '+' is a space, '%2B' a plus
        ObjectCreated("raw", "recordings/x/c.wav", 5, "abc"),
    ]
    assert unreadable == 5  # not JSON, a list, Records not a list, no key, a size that is no number


def test_trigger_payloads_and_asset_event_extras_give_the_same_messages():
    message = notification(("ObjectCreated:Put", "recordings/2026-11-02/a.wav"))
    payload = {"status": "success", "message_batch": [message, message]}
    # An asset event's extra, as Airflow's Trigger.submit_event stores the trigger's payload.
    assert trigger_messages([payload]) == trigger_messages([{"from_trigger": True, "payload": payload}]) == [message, message]
    assert trigger_messages([{"something": "else"}]) == [{"something": "else"}]  # then counted unreadable


@pytest.fixture
def landing(settings):
    settings = dataclasses.replace(settings, events=EventsSettings(sidecar_wait_s=600))
    client = object_store.s3_client(settings.s3)

    def put(name: str, body: bytes = b"RIFF audio") -> ObjectCreated:
        key = f"{settings.s3.raw_prefix}{DAY}/{name}"
        object_store.put_bytes(client, settings.s3.raw_bucket, key, body)
        return ObjectCreated(settings.s3.raw_bucket, key, len(body))

    return settings, client, put


def _registration(settings, client, call_id: str) -> dict | None:
    key = f"{settings.s3.ops_prefix}landing/date={DAY}/call_id={call_id}.json"
    found = object_store.get_bytes_and_etag(client, settings.s3.curated_bucket, key)
    return json.loads(found[0]) if found else None


def test_duplicate_events_register_a_recording_once(landing):
    settings, client, put = landing
    rec, meta = put("dup.wav"), put("dup.json", b"{}")
    first = register(settings, [rec, meta, rec])
    assert [r["call_id"] for r in first.registered] == ["dup"]
    again = register(settings, [rec, rec])
    assert again.registered == [] and again.already_registered == ["dup"]
    assert _registration(settings, client, "dup")["key"] == rec.key


def test_a_sidecar_landing_after_its_recording_is_waited_for(landing):
    settings, client, put = landing
    rec = put("late-meta.wav")
    waiting = register(settings, [rec])
    assert waiting.waiting_for_metadata == ["late-meta"] and waiting.registered == []
    assert _registration(settings, client, "late-meta") is None
    meta = put("late-meta.json", b'{"consent": {}}')
    done = register(settings, [meta])  # the sidecar's own event registers its recording
    assert [r["key"] for r in done.registered] == [rec.key]


def test_a_recording_whose_sidecar_never_lands_is_registered_after_the_wait(landing):
    settings, _, put = landing
    rec = put("no-meta.wav")
    assert register(settings, [rec]).waiting_for_metadata == ["no-meta"]
    later = utc_now() + timedelta(seconds=settings.events.sidecar_wait_s + 1)
    assert [r["call_id"] for r in register(settings, [rec], now=later).registered] == ["no-meta"]


def test_out_of_order_events_come_to_the_same_registration(landing):
    settings, _, put = landing
    meta = put("ooo.json", b"{}")
    early = register(settings, [meta])  # the sidecar's event, before its recording landed
    assert early.waiting_for_recording == ["ooo"] and early.registered == []
    rec = put("ooo.wav")
    # Both events arrive now, the sidecar's again first: one registration.
    report = register(settings, [meta, rec])
    assert [r["call_id"] for r in report.registered] == ["ooo"]


def test_committed_gone_and_foreign_objects_register_nothing(landing):
    settings, client, put = landing
    done = put("done.wav")
    CuratedStore(settings, client=client).write_manifest(dataclasses.replace(CallManifest("done"), call_date=DAY))
    vanished = put("vanished.wav")
    object_store.delete_object(client, settings.s3.raw_bucket, vanished.key)
    stray = [
        put("notes/readme.txt"),
        put(".hidden.wav"),
        put("bad name!.wav"),
        put("bad name!.json", b"{}"),
        ObjectCreated("someone-elses-bucket", f"{settings.s3.raw_prefix}{DAY}/x.wav"),
    ]
    report = register(settings, [done, vanished, *stray])
    assert report.registered == []
    assert report.already_committed == ["done"] and report.gone == ["vanished"]
    assert sum(report.not_recordings.values()) == 5
    assert "bad name!" not in json.dumps(report.to_dict())  # stray names are counted, never listed


def test_a_reupload_before_analysis_is_announced_again(landing):
    settings, client, put = landing
    put("redo.json", b"{}")
    first = put("redo.wav", b"RIFF first take")
    assert register(settings, [first]).registered
    first_etag = _registration(settings, client, "redo")["etag"]
    second = put("redo.wav", b"RIFF second take")
    report = register(settings, [second])
    assert [r["call_id"] for r in report.registered] == ["redo"]
    assert _registration(settings, client, "redo")["etag"] == report.registered[0]["etag"] != first_etag


def test_register_messages_and_the_listing_path_share_the_registrations(landing):
    settings, _, put = landing
    put("listed.wav"), put("listed.json", b"{}")
    assert [r["call_id"] for r in register_pending(settings, discover_pending(settings)).registered] == ["listed"]
    message = notification(("ObjectCreated:Put", f"{settings.s3.raw_prefix}{DAY}/listed.wav"), bucket=settings.s3.raw_bucket)
    report = register_messages(settings, [message, {"Body": "garbage"}])
    assert report.already_registered == ["listed"] and report.unreadable_messages == 1
