"""Landing: S3 ObjectCreated notifications -> the recordings they announce, each registered once.

S3 delivers its notifications at least once and in no promised order, and a call's metadata
sidecar may land before or after its recording. So an event is a hint, never the truth: each
call an event names is looked up in the bucket as it is now, which makes duplicate, late and
out-of-order events come to the same result. A call is registered (one small record under
``<ops_prefix>landing/``, written by compare-and-swap) when its recording is there, not
committed yet, and its sidecar has landed or ``events.sidecar_wait_s`` has passed; a second
event for the same recording finds the record and registers nothing. Registering is
announcing: the landing DAG turns new registrations into one asset event; the batch itself
never trusts a registration (it lists the bucket), so a lost event delays a call until the
nightly run and never loses it.

Without a queue the landing DAG registers the pending recordings of a listing instead
(:func:`register_pending`, given ``pipeline.jobs.batch.discover_pending``): the same records, so a recording is announced once either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from urllib.parse import unquote_plus

from pipeline.clock import utc_now
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore
from pipeline.storage.keys import NotARecording, RawRecording, classify_raw_key, landing_key, valid_call_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectCreated:
    """One S3 ObjectCreated notification record (key already URL-decoded)."""

    bucket: str
    key: str
    size: int = 0
    etag: str = ""


@dataclass
class LandingReport:
    """What one landing run made of its events. Call ids only: raw keys of objects that are not
    recordings are counted by reason, since a stray file's name may say anything."""

    events: int = 0  # ObjectCreated records read
    registered: list[dict] = field(default_factory=list)  # RawRecording fields, newly announced
    already_registered: list[str] = field(default_factory=list)  # call ids (duplicate events)
    already_committed: list[str] = field(default_factory=list)
    waiting_for_metadata: list[str] = field(default_factory=list)
    waiting_for_recording: list[str] = field(default_factory=list)  # a sidecar landed first
    gone: list[str] = field(default_factory=list)  # announced, no longer in the bucket
    not_recordings: dict[str, int] = field(default_factory=dict)  # reason -> count
    unreadable_messages: int = 0  # queue messages that are not S3 notifications

    def to_dict(self) -> dict:
        return asdict(self)


# --- reading the queue's messages ----------------------------------------------------------


def _records(body: object) -> list[dict] | None:
    """The S3 event records in one message body; [] for S3's test event; None when unreadable."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, Mapping):
        return None
    if body.get("Event") == "s3:TestEvent":  # sent once when the notification is configured
        return []
    if body.get("Type") == "Notification" and "Message" in body:  # fanned out through SNS
        return _records(body["Message"])
    records = body.get("Records")
    if not isinstance(records, list):
        return None
    return [r for r in records if isinstance(r, Mapping)]


def parse_messages(messages: Iterable[object]) -> tuple[list[ObjectCreated], int]:
    """SQS messages (dicts with a ``Body``, as the queue trigger delivers them, or bare bodies)
    -> the ObjectCreated records they carry, and the number of messages that could not be read."""
    found: list[ObjectCreated] = []
    unreadable = 0
    for message in messages:
        body = message.get("Body") if isinstance(message, Mapping) and "Body" in message else message
        records = _records(body)
        if records is None:
            unreadable += 1
            continue
        for record in records:
            try:
                if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
                    continue
                s3 = record["s3"]
                found.append(ObjectCreated(
                    bucket=str(s3["bucket"]["name"]),
                    key=unquote_plus(str(s3["object"]["key"])),  # S3 form-encodes keys in events
                    size=int(s3["object"].get("size") or 0),
                    etag=str(s3["object"].get("eTag") or "").strip('"'),
                ))
            except (KeyError, TypeError, ValueError):
                unreadable += 1
    return found, unreadable


def trigger_messages(payloads: Iterable[object]) -> list[object]:
    """The SQS messages inside queue-trigger event payloads (``{"message_batch": [...]}``, also
    wrapped as ``{"payload": ...}`` in an asset event's extra); anything else counts as one
    unreadable message downstream."""
    messages: list[object] = []
    for payload in payloads:
        if isinstance(payload, Mapping) and "payload" in payload:
            payload = payload["payload"]
        batch = payload.get("message_batch") if isinstance(payload, Mapping) else None
        messages.extend(batch if isinstance(batch, list) else [payload])
    return messages


# --- registering -----------------------------------------------------------------------------


@dataclass
class _Call:
    day: str
    call_id: str
    announced_recording: bool = False


def _touched_calls(settings: Settings, events: list[ObjectCreated], report: LandingReport) -> list[_Call]:
    s3 = settings.s3
    calls: dict[tuple[str, str], _Call] = {}
    for event in events:
        if event.bucket != s3.raw_bucket:
            item = NotARecording(event.key, "ignored", "another bucket")
        else:
            item = classify_raw_key(event.key, s3.raw_prefix, event.size, event.etag)
        if isinstance(item, RawRecording):
            call = calls.setdefault((item.call_date, item.call_id), _Call(item.call_date, item.call_id))
            call.announced_recording = True
        elif item.kind == "sidecar" and valid_call_id(call_id := event.key.rsplit("/", 1)[1].removesuffix(".json")):
            day = event.key[len(s3.raw_prefix):].split("/")[0]
            calls.setdefault((day, call_id), _Call(day, call_id))
        elif item.kind == "sidecar":
            report.not_recordings["metadata named by no valid call id"] = report.not_recordings.get("metadata named by no valid call id", 0) + 1
        else:
            report.not_recordings[item.reason] = report.not_recordings.get(item.reason, 0) + 1
    return sorted(calls.values(), key=lambda c: (c.day, c.call_id))


def _call_objects(client, settings: Settings, call: _Call) -> tuple[list[tuple[RawRecording, datetime]], bool]:
    """The call's recordings in the bucket now (with their times), and whether its sidecar is there."""
    s3 = settings.s3
    folder = f"{s3.raw_prefix}{call.day}/"
    recordings, sidecar = [], False
    for obj in object_store.list_objects(client, s3.raw_bucket, f"{folder}{call.call_id}"):
        item = classify_raw_key(obj.key, s3.raw_prefix, obj.size, obj.etag)
        if isinstance(item, RawRecording) and item.call_id == call.call_id:
            recordings.append((item, obj.last_modified))
        elif obj.key == f"{folder}{call.call_id}.json":
            sidecar = True
    return recordings, sidecar


def _register_once(client, settings: Settings, rec: RawRecording) -> bool:
    """Write the call's registration unless one for this very object exists: True when written.
    Compare-and-swap, so two landing runs racing on one event register it once."""
    s3 = settings.s3
    key = landing_key(s3.ops_prefix, rec.call_date, rec.call_id)
    body = json.dumps({"key": rec.key, "etag": rec.etag, "size": rec.size, "registered_at": utc_now().isoformat()}).encode()
    found = object_store.get_bytes_and_etag(client, s3.curated_bucket, key)
    if found is not None:
        try:
            if json.loads(found[0]).get("etag") == rec.etag:
                return False
        except ValueError:
            pass  # an unreadable record is replaced
    return object_store.put_conditional(client, s3.curated_bucket, key, body, if_etag=found[1] if found else None) is not None


def register(settings: Settings, events: list[ObjectCreated], *, client=None, now: datetime | None = None,
             report: LandingReport | None = None) -> LandingReport:
    """Register the recordings that ``events`` announce, each once (see the module's docstring)."""
    client = client or object_store.s3_client(settings.s3)
    now = now or utc_now()
    report = report or LandingReport()
    report.events += len(events)
    store = CuratedStore(settings, client=client)
    wait = timedelta(seconds=settings.events.sidecar_wait_s)
    for call in _touched_calls(settings, events, report):
        recordings, sidecar = _call_objects(client, settings, call)
        if not recordings:
            (report.gone if call.announced_recording else report.waiting_for_recording).append(call.call_id)
            continue
        if store.read_manifest(call.day, call.call_id) is not None:
            report.already_committed.append(call.call_id)
            continue
        # Two media files for one call: registered all the same; the batch quarantines it with the reason.
        rec, landed_at = min(recordings, key=lambda r: r[0].key)
        if not sidecar and now - landed_at < wait:
            report.waiting_for_metadata.append(call.call_id)
            continue
        if _register_once(client, settings, rec):
            report.registered.append(asdict(rec))
            log.info("registered call %s of %s (%d bytes)", rec.call_id, rec.call_date, rec.size)
        else:
            report.already_registered.append(call.call_id)
    return report


def register_messages(settings: Settings, messages: Iterable[object], *, client=None,
                      now: datetime | None = None) -> LandingReport:
    """Register what a batch of SQS messages announces (the landing DAG's event path)."""
    events, unreadable = parse_messages(messages)
    report = LandingReport(unreadable_messages=unreadable)
    if unreadable:
        log.warning("%d queue message(s) are not S3 notifications: ignored", unreadable)
    return register(settings, events, client=client, now=now, report=report)


def register_pending(settings: Settings, pending: Iterable[RawRecording], *, client=None,
                     now: datetime | None = None) -> LandingReport:
    """Register recordings a listing found pending (``pipeline.jobs.batch.discover_pending``: the
    landing DAG's path without a queue)."""
    events = [ObjectCreated(settings.s3.raw_bucket, r.key, r.size, r.etag) for r in pending]
    return register(settings, events, client=client, now=now)
