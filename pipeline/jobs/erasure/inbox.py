"""Requests dropped in the bucket (the callaffect_erasure DAG): each valid one erased, each
invalid one deleted with its rejection kept."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from pipeline.clock import utc_now
from pipeline.jobs.erasure.erase import ErasureBusy, erase
from pipeline.jobs.erasure.finish import ErasureError
from pipeline.jobs.erasure.requests import MAX_REQUEST_BYTES, RequestError, parse_request
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.keys import erasure_rejected_key, erasure_requests_folder, valid_request_id

log = logging.getLogger(__name__)


@dataclass
class RequestsReport:
    done: dict[str, dict] = field(default_factory=dict)  # request id -> removed counts
    rejected: dict[str, str] = field(default_factory=dict)  # rejected record key -> reason
    busy: list[str] = field(default_factory=list)  # waiting for a call's analysis to end
    failed: dict[str, str] = field(default_factory=dict)  # request key's digest -> error type

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _reject(settings: Settings, client, key: str, reason: str) -> str:
    s3 = settings.s3
    rejected = erasure_rejected_key(s3.ops_prefix, key)
    body = {"request_key_sha256": hashlib.sha256(key.encode()).hexdigest(), "reason": reason,
            "rejected_at": utc_now().isoformat()}
    object_store.put_bytes(client, s3.curated_bucket, rejected, json.dumps(body, sort_keys=True).encode(), "application/json")
    object_store.purge_key(client, s3.curated_bucket, key)  # it may hold an id in clear
    log.warning("erasure request rejected (%s): %s", rejected, reason)
    return rejected


def process_requests(settings: Settings, *, report_window_days: int | None = None, client=None) -> RequestsReport:
    """Work through the requests under ``<ops_prefix>erasure/requests/<request_id>.json``: each
    valid one is erased and its request object deleted (the record under ``done/`` stays); an
    invalid one is deleted and a rejection with the reason kept. A request meeting a call under
    analysis waits for the next run. Raises at the end if one failed (the others are done)."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    folder = erasure_requests_folder(s3.ops_prefix)
    report = RequestsReport()
    for obj in list(object_store.list_objects(client, s3.curated_bucket, folder)):
        name = obj.key[len(folder):]
        try:
            if obj.size > MAX_REQUEST_BYTES:
                raise RequestError(f"request is {obj.size} bytes, over the {MAX_REQUEST_BYTES}-byte limit")
            if not name.endswith(".json") or not valid_request_id(name.removesuffix(".json")):
                raise RequestError("the object's name is not <request_id>.json with a valid request id")
            request = parse_request(object_store.get_bytes(client, s3.curated_bucket, obj.key))
            if request.request_id != name.removesuffix(".json"):
                raise RequestError("request_id differs from the object's name")
        except RequestError as exc:
            report.rejected[_reject(settings, client, obj.key, str(exc))] = str(exc)
            continue
        try:
            result = erase(settings, request, client=client, report_window_days=report_window_days,
                           requested_at=obj.last_modified)
        except ErasureBusy:
            report.busy.append(request.request_id)
            continue
        except Exception as exc:  # noqa: BLE001 - one request's S3 error must not hold the others back
            log.warning("erasure request %s failed: %s", request.request_id, type(exc).__name__)
            report.failed[request.request_id] = type(exc).__name__
            continue
        object_store.purge_key(client, s3.curated_bucket, obj.key)
        report.done[request.request_id] = {"removed": result.removed, "versions_deleted": result.versions_deleted,
                                           "already_done": result.already_done}
    if report.failed:
        raise ErasureError(f"{len(report.failed)} erasure request(s) failed and wait for the next run: "
                           + ", ".join(sorted(report.failed)))
    return report
