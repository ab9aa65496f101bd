"""pipeline.jobs.erasure on the local stack (moto's S3 server, real DuckDB marts, the fast
stand-in analysis): a call or a subject erased from every place it went, nothing else touched."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from stack_helpers import analyses_of, tables_analyze

from pipeline import cli
from pipeline.digests import file_sha256
from pipeline.jobs import erasure
from pipeline.jobs.batch import discover, process_recording, record_failure, settle_discovery
from pipeline.jobs.marts import build_marts
from pipeline.jobs.trend_report import WINDOW_DAYS, build_trend_report
from pipeline.settings import ErasureSettings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore
from pipeline.storage.keys import (
    classify_raw_key,
    erasure_record_key,
    erasure_request_key,
    erasure_requests_folder,
    retention_log_key,
    tombstone_key,
)
from pipeline.storage.reviews import Assignment, Note, ReviewStore, Verdict, ViewEvent

DAY, DAY2 = "2024-05-02", "2024-05-03"
ERASED = "erase-b"
# Kept calls: one whose id starts with the erased one's (it must not be touched), one a day later.
KEPT = {"keep-a": DAY, "erase-b2": DAY, "keep-e": DAY2}
SUBJECT = "cust-42"
SUBJECT_CALLS = {"subj-c": DAY, "subj-d": DAY2}  # subj-d is never processed: found by its sidecar


def subject_analyze(media_path, call_id, *, settings, call_date, metadata=None, **kwargs):
    """The stand-in analysis, recording what the real one does in the manifest: the media's
    sha256 and the metadata's subject id."""
    result = tables_analyze(media_path, call_id, settings=settings, call_date=call_date, metadata=metadata, **kwargs)
    result.manifest.sha256 = file_sha256(media_path)
    result.manifest.subject_id = metadata.subject_id if metadata else None
    result.snippets = {f"{call_id}-f0": b"OggS review audio of " + call_id.encode()}
    return result


def _client(settings):
    return _client_for(settings.s3)


@functools.cache
def _client_for(s3):
    return object_store.s3_client(s3)  # one per bucket pair: making a boto3 client costs ~0.2 s


def _upload(settings, day: str, call_id: str, media: bytes, metadata: dict | None = None, ext: str = "wav") -> str:
    client, s3 = _client(settings), settings.s3
    key = f"{s3.raw_prefix}{day}/{call_id}.{ext}"
    object_store.put_bytes(client, s3.raw_bucket, key, media)
    if metadata is not None:
        object_store.put_bytes(client, s3.raw_bucket, f"{s3.raw_prefix}{day}/{call_id}.json", json.dumps(metadata).encode())
    return key


def _process(settings, key: str):
    return process_recording(classify_raw_key(key, settings.s3.raw_prefix), settings, subject_analyze)


def _pass_gate(settings) -> None:
    """Mark every committed call as passed by the quality gate, as the gate would for these valid
    stand-in tables (the real gate costs seconds a call; tests/jobs/test_quality_gate.py has it)."""
    store = CuratedStore(settings)
    for _, manifest in store.manifests():
        manifest.quality = {"passed": True, "failures": [], "suite": "callaffect_call_tables@1",
                            "checked_at": "2024-06-01T12:00:00+00:00"}
        store.write_manifest(manifest)


def _build(settings):
    report = build_marts(settings)
    build_trend_report(settings, day=DAY2)
    return report


@pytest.fixture
def stack(settings, tmp_path):
    """The local stack with both buckets versioned (as infra/terraform makes them)."""
    return _stack(settings, tmp_path, versioned=True)


@pytest.fixture
def plain_stack(settings, tmp_path):
    """The same on buckets never versioned (S3 lists each object as version "null")."""
    return _stack(settings, tmp_path, versioned=False)


@pytest.fixture
def lean_stack(settings, tmp_path):
    """Versioned, without marts and trend report: for tests that never reach them."""
    return _stack(settings, tmp_path, versioned=True, marts=False)


def _stack(settings, tmp_path, versioned: bool, marts: bool = True):
    """Five committed calls (one erased, one whose id extends the erased one's, one of the
    subject), one of the subject's not processed yet, gated, in the marts and a trend report;
    review records, a failure count, an ignored extra media file and a retention log naming the
    erased call."""
    settings = dataclasses.replace(settings, erasure=ErasureSettings(digest_key_path=str(tmp_path / "erasure-key")))
    client, s3 = _client(settings), settings.s3
    if versioned:
        for bucket in (s3.raw_bucket, s3.curated_bucket):
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    keys = {}
    for call_id, day in {**KEPT, ERASED: DAY, "subj-c": DAY}.items():
        meta = {"subject_id": SUBJECT} if call_id == "subj-c" else {"agent_id": "agent-7"}
        keys[call_id] = _upload(settings, day, call_id, b"RIFF media of " + call_id.encode(), meta)
        assert _process(settings, keys[call_id]).manifest.status == "ok"
    # An older version of the erased call's media (it was uploaded twice) and an extra media file.
    object_store.put_bytes(client, s3.raw_bucket, keys[ERASED], b"RIFF media of erase-b, take 2")
    _upload(settings, DAY, ERASED, b"ID3 the same call as mp3", ext="mp3")
    keys["subj-d"] = _upload(settings, DAY2, "subj-d", b"RIFF media of subj-d", {"subject_id": SUBJECT})
    settle_discovery(settings, discover(settings, client), client)  # the extra mp3: ignored, with a marker
    record_failure(client, settings, classify_raw_key(keys[ERASED], s3.raw_prefix), "S3 timeout")
    _pass_gate(settings)

    reviews = ReviewStore(settings, client)
    for call_id in (ERASED, "keep-a"):
        reviews.add_verdict(Verdict.new(f"{call_id}-f0", call_id, DAY, "frustration-v1", "rita", "confirmed", "sounded upset"))
        reviews.add_note(Note.new(call_id, DAY, 0, "rita", "customer asked twice"))
        reviews.add_assignment(Assignment.new(f"{call_id}-f0", call_id, "rita", "lena"))
        reviews.log_view(ViewEvent.new("rita", call_id))
    lines = [{"call_id": c, "bucket": s3.raw_bucket, "key": keys[c], "kind": "media"} for c in ("keep-a", ERASED)]
    object_store.put_bytes(client, s3.curated_bucket, retention_log_key(s3.ops_prefix, datetime(2024, 6, 1, tzinfo=timezone.utc)),
                           "".join(json.dumps(line) + "\n" for line in lines).encode())
    if marts:
        _build(settings)
    return settings


# --- what the tests look at ------------------------------------------------------------------


def _all_versions(settings) -> dict[tuple[str, str, str], bytes]:
    """(bucket, key, version) -> bytes (b"" for a delete marker), of both buckets."""
    client, found = _client(settings), {}
    for bucket in (settings.s3.raw_bucket, settings.s3.curated_bucket):
        for v in object_store.list_versions(client, bucket):
            found[(bucket, v.key, v.version_id)] = (
                b"" if v.is_delete_marker else object_store.get_version_bytes(client, bucket, v.key, v.version_id))
    return found


def _texts(blob: bytes) -> list[str]:
    """What an object says: its bytes, and for Parquet every value (compressed pages hide text)."""
    texts = [blob.decode("utf-8", "replace")]
    if blob[:4] == b"PAR1":
        texts.append(json.dumps(pq.read_table(io.BytesIO(blob)).to_pylist(), default=str))
    return texts


def _naming(settings, needle: str) -> list[tuple[str, str]]:
    """(bucket, key) of every object version whose key or content holds ``needle`` as a whole id."""
    pattern = re.compile(rf"(?<![A-Za-z0-9_\-]){re.escape(needle)}(?![A-Za-z0-9_\-])")
    return sorted({(b, k) for (b, k, _), blob in _all_versions(settings).items()
                   if pattern.search(k) or any(pattern.search(t) for t in _texts(blob))})


def _curated_rows(settings) -> Counter:
    """(table, call) -> rows, over the curated Parquet of every call."""
    store, rows = CuratedStore(settings), Counter()
    for _, manifest in store.manifests():
        for table, key in manifest.table_keys.items():
            blob = store.read_bytes(key[len(settings.s3.curated_prefix):])
            rows[(table, manifest.call_id)] += pq.read_metadata(io.BytesIO(blob)).num_rows
    return rows


def _marts_rows(path) -> Counter:
    """(table, call) -> rows, over every table of the marts file that has a call_id."""
    rows = Counter()
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("select table_name from duckdb_columns() where column_name = 'call_id' "
                             "and table_name in (select table_name from duckdb_tables())").fetchall()
        for (table,) in tables:
            for call_id, n in con.execute(f'select call_id, count(*) from "{table}" group by 1').fetchall():
                rows[(table, call_id)] = n
    return rows


def _without(rows: Counter, calls) -> Counter:
    return Counter({k: v for k, v in rows.items() if k[1] not in calls})


# --- the tests -------------------------------------------------------------------------------


def test_erasing_a_call_removes_it_everywhere_and_only_it(stack, capsys, monkeypatch):
    settings, client, s3 = stack, _client(stack), stack.s3
    marts_path = Path(settings.marts.duckdb_path)
    curated_before, marts_before = _curated_rows(settings), _marts_rows(marts_path)
    assert {c for _, c in curated_before} == {*KEPT, ERASED, "subj-c"}
    assert {c for _, c in marts_before} >= {*KEPT, ERASED}
    named = _naming(settings, ERASED)
    # Where it went: raw media (2 versions), the mp3, sidecar, tables, snippet, manifest, reviews,
    # failure count, ignored marker, retention log (the control for the scan below).
    assert {b for b, _ in named} == {s3.raw_bucket, s3.curated_bucket}
    assert any("_ops/retention/" in k for _, k in named) and any("_reviews/views/" in k for _, k in named)
    report_key = f"{s3.curated_prefix}reports/{DAY2}/index.html"
    old_report = object_store.get_bytes(client, s3.curated_bucket, report_key)
    old_inode = marts_path.stat().st_ino
    media_sha = {file_sha256_bytes(b"RIFF media of erase-b"), file_sha256_bytes(b"RIFF media of erase-b, take 2"),
                 file_sha256_bytes(b"ID3 the same call as mp3")}

    from airflow_env import use_settings

    use_settings(monkeypatch, settings)
    code = cli.main(["erase", "--call-id", ERASED, "--request-id", "req-0001", "--requested-by", "ops:dpo-ticket-17"])
    out = json.loads(capsys.readouterr().out)

    assert code == 0
    assert _naming(settings, ERASED) == []  # no version of any object, key or content
    assert ERASED not in json.dumps(out)
    summary = out["erasure"]
    assert summary["removed"]["raw_media"] == 2 and summary["removed"]["raw_metadata"] == 1
    assert summary["removed"]["snippets"] == 1 and summary["removed"]["manifests"] == 1
    assert summary["removed"]["reviews.verdicts"] == summary["removed"]["reviews.notes"] == 1
    assert summary["removed"]["reviews.views"] == 1 and summary["removed"]["ops.failures"] == 1
    assert summary["removed"]["ops.ignored"] == 1 and summary["log_lines_removed"] == 1
    assert summary["tombstones"] == 3  # 3 media versions (the manifest's hash is the first one's)
    for sha in media_sha:
        assert object_store.object_size(client, s3.curated_bucket, tombstone_key(s3.ops_prefix, sha)) is not None
    # Every other call: same rows per table, in the curated Parquet and in the new marts file.
    assert _curated_rows(settings) == _without(curated_before, {ERASED})
    assert _marts_rows(marts_path) == _without(marts_before, {ERASED})
    assert marts_path.stat().st_ino != old_inode  # a new file, not rows deleted in place
    assert [p.name for p in marts_path.parent.iterdir()] == [marts_path.name]  # no WAL, no half build
    assert out["marts"]["requests"] == ["req-0001"] and out["marts"]["reports_rebuilt"] == [DAY2]
    new_report = object_store.get_bytes(client, s3.curated_bucket, report_key)
    assert new_report != old_report and new_report.startswith(b"<!doctype html>")
    # The retention log keeps the other call's line; the kept call's review records stay.
    [log_key] = [o.key for o in object_store.list_objects(client, s3.curated_bucket, f"{s3.ops_prefix}retention/")]
    assert [json.loads(x)["call_id"] for x in object_store.get_bytes(client, s3.curated_bucket, log_key).splitlines()] == ["keep-a"]
    reviews = ReviewStore(settings, client)
    assert [v.call_id for v in reviews.verdicts()] == ["keep-a"]
    assert [v.call_id for v in reviews.views(datetime.now(timezone.utc).date().isoformat())] == ["keep-a"]

    record = erasure.read_record(settings, "req-0001")
    assert record["requested_by"] == "ops:dpo-ticket-17" and record["calls"] == [erasure.call_digest(settings, ERASED)]
    assert record["marts"]["verified"] is True and record["within_deadline"] is True
    assert 0 <= record["latency_s"] < 600 and record["completed_at"] >= record["objects_erased_at"]
    assert record["removed"] == summary["removed"] and record["reuploads"] == []

    # Idempotent: the same request again removes nothing, rebuilds nothing, keeps the record.
    record_bytes = object_store.get_bytes(client, s3.curated_bucket, erasure_record_key(s3.ops_prefix, "req-0001"))
    inode = marts_path.stat().st_ino
    again = erasure.erase(settings, erasure.validate_request(
        {"request_id": "req-0001", "call_id": ERASED, "requested_by": "ops:dpo-ticket-17"}), report_window_days=WINDOW_DAYS)
    assert again.already_done and again.removed == {} and again.versions_deleted == 0 and again.tombstones == 0
    assert erasure.finish_pending(settings, build_marts=build_marts)["requests"] == []
    assert object_store.get_bytes(client, s3.curated_bucket, erasure_record_key(s3.ops_prefix, "req-0001")) == record_bytes
    assert marts_path.stat().st_ino == inode


def file_sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_erasing_a_subject_finds_processed_and_unprocessed_calls(plain_stack):
    settings, client, s3 = plain_stack, _client(plain_stack), plain_stack.s3
    # The processed call is found by its manifest alone (sidecar gone), the other by its sidecar.
    object_store.delete_object(client, s3.raw_bucket, f"{s3.raw_prefix}{DAY}/subj-c.json")
    curated_before, marts_before = _curated_rows(settings), _marts_rows(settings.marts.duckdb_path)
    assert ("calls", "subj-c") in curated_before

    result = erasure.erase(settings, erasure.validate_request(
        {"request_id": "req-subj-1", "subject_id": SUBJECT, "requested_by": "dpo"}), report_window_days=WINDOW_DAYS)
    finished = erasure.finish_pending(settings, build_marts=build_marts, build_report=build_trend_report)

    digest = erasure.digester(settings)
    assert sorted(result.calls) == sorted(digest.call(c) for c in SUBJECT_CALLS)
    assert (result.target, result.target_digest) == ("subject", digest.subject(SUBJECT))
    for needle in (*SUBJECT_CALLS, SUBJECT):
        assert _naming(settings, needle) == [], needle
    assert _curated_rows(settings) == _without(curated_before, SUBJECT_CALLS)
    assert _marts_rows(settings.marts.duckdb_path) == _without(marts_before, SUBJECT_CALLS)
    assert finished["requests"] == ["req-subj-1"]
    record = object_store.get_bytes(client, s3.curated_bucket, erasure_record_key(s3.ops_prefix, "req-subj-1")).decode()
    assert SUBJECT not in record and not any(c in record for c in SUBJECT_CALLS)


def test_a_dry_run_lists_and_changes_nothing(stack):
    before = _all_versions(stack)
    marts = Path(stack.marts.duckdb_path).read_bytes()

    result = erasure.erase(stack, erasure.validate_request(
        {"request_id": "req-dry", "call_id": ERASED, "requested_by": "dpo"}), dry_run=True)

    assert _all_versions(stack) == before and Path(stack.marts.duckdb_path).read_bytes() == marts
    assert result.dry_run and result.record_key is None and result.removed["tables"] >= 6
    digest = erasure.call_digest(stack, ERASED)
    assert f"curated:calls/date={DAY}/call_id={digest}/part-0.parquet" in result.keys
    assert not any(ERASED in k for k in result.keys)
    assert erasure.awaiting_marts(stack) == []


def test_the_versioned_raw_bucket_loses_every_version_and_delete_marker(lean_stack):
    client, s3 = _client(lean_stack), lean_stack.s3
    key = f"{s3.raw_prefix}{DAY}/{ERASED}.wav"
    object_store.delete_object(client, s3.raw_bucket, key)  # a delete marker on top of two versions
    versions = [v for v in object_store.list_versions(client, s3.raw_bucket, key) if v.key == key]
    assert len(versions) == 3 and sum(v.is_delete_marker for v in versions) == 1

    erasure.erase(lean_stack, erasure.validate_request({"request_id": "req-v", "call_id": ERASED, "requested_by": "dpo"}))

    assert [v for v in object_store.list_versions(client, s3.raw_bucket) if ERASED + "." in v.key] == []
    kept = {v.key for v in object_store.list_versions(client, s3.raw_bucket)}
    assert {f"{s3.raw_prefix}{DAY}/keep-a.wav", f"{s3.raw_prefix}{DAY}/erase-b2.wav"} <= kept


def test_a_tombstone_stops_a_reuploaded_copy_from_being_analysed(lean_stack):
    client, s3 = _client(lean_stack), lean_stack.s3
    erasure.erase(lean_stack, erasure.validate_request({"request_id": "req-t", "call_id": ERASED, "requested_by": "dpo"}))
    copy = _upload(lean_stack, "2024-05-09", "copy-x", b"RIFF media of erase-b, take 2", {"subject_id": "cust-9"})
    other = _upload(lean_stack, "2024-05-09", "fresh-y", b"RIFF never erased")
    analysed_before = analyses_of(lean_stack)

    outcome = _process(lean_stack, copy)
    fresh = _process(lean_stack, other)

    assert outcome.skipped == "erased" and outcome.manifest is None
    assert analyses_of(lean_stack) == [*analysed_before, "fresh-y"] and fresh.manifest.status == "ok"
    assert [v for v in object_store.list_versions(client, s3.raw_bucket) if "copy-x" in v.key] == []
    assert CuratedStore(lean_stack).read_manifest("2024-05-09", "copy-x") is None
    [note] = erasure.read_record(lean_stack, "req-t")["reuploads"]
    assert note["sha256"] == file_sha256_bytes(b"RIFF media of erase-b, take 2") and note["versions_deleted"] == 2


def _drop(settings, name: str, body: bytes) -> str:
    key = erasure_requests_folder(settings.s3.ops_prefix) + name
    object_store.put_bytes(_client(settings), settings.s3.curated_bucket, key, body)
    return key


HOSTILE = {
    "both-targets.json": {"request_id": "both-targets", "call_id": ERASED, "subject_id": SUBJECT, "requested_by": "dpo"},
    "no-target.json": {"request_id": "no-target", "requested_by": "dpo"},
    "traversal.json": {"request_id": "traversal", "call_id": "../../_manifests/x", "requested_by": "dpo"},
    "not-a-string.json": {"request_id": "not-a-string", "call_id": 1234, "requested_by": "dpo"},
    "extra-field.json": {"request_id": "extra-field", "call_id": ERASED, "requested_by": "dpo", "also": "keep-a"},
    "name-differs.json": {"request_id": "other-name", "call_id": ERASED, "requested_by": "dpo"},
    "id-in-request.json": {"request_id": "id-in-request", "call_id": "request", "requested_by": "dpo"},
    "id-in-requester.json": {"request_id": "id-in-requester", "call_id": ERASED, "requested_by": f"on behalf of {ERASED}"},
    "newline-requester.json": {"request_id": "newline-requester", "call_id": ERASED, "requested_by": "dpo\nINJECTED"},
    "naive-time.json": {"request_id": "naive-time", "call_id": ERASED, "requested_by": "dpo", "requested_at": "2024-06-01T10:00:00"},
    "bad name $(rm).json": {"request_id": "bad", "call_id": ERASED, "requested_by": "dpo"},
}


def test_invalid_requests_are_rejected_with_a_reason_and_erase_nothing(lean_stack):
    client, s3 = _client(lean_stack), lean_stack.s3
    before = _curated_rows(lean_stack)
    for name, body in HOSTILE.items():
        _drop(lean_stack, name, json.dumps(body).encode())
    _drop(lean_stack, "not-json.json", b"{call_id: erase-b")
    _drop(lean_stack, "huge.json", b" " * (erasure.MAX_REQUEST_BYTES + 1) + b"{}")

    report = erasure.process_requests(lean_stack)

    assert report.done == {} and report.busy == [] and len(report.rejected) == len(HOSTILE) + 2
    assert _curated_rows(lean_stack) == before  # nothing erased
    assert list(object_store.list_objects(client, s3.curated_bucket, erasure_requests_folder(s3.ops_prefix))) == []
    reasons = sorted(report.rejected.values())
    assert any("exactly one of call_id and subject_id" in r for r in reasons)
    assert any(r.startswith("call_id: String should match pattern") for r in reasons)
    assert any("unknown field 'also'" in r for r in reasons) and any("differs from the object's name" in r for r in reasons)
    assert any("request_id must not contain" in r for r in reasons) and any("requested_by must not contain" in r for r in reasons)
    assert "request is not valid JSON" in reasons and any("byte limit" in r for r in reasons)
    # No hostile value reaches a key or a rejection record.
    rejected = {o.key: object_store.get_bytes(client, s3.curated_bucket, o.key)
                for o in object_store.list_objects(client, s3.curated_bucket, f"{s3.ops_prefix}erasure/rejected/")}
    assert len(rejected) == len(report.rejected)
    blob = json.dumps({k: v.decode() for k, v in rejected.items()})
    for value in (ERASED, SUBJECT, "../", "INJECTED", "rm)", "keep-a"):
        assert value not in blob, value


def test_a_request_is_refused_while_its_call_is_being_analysed(lean_stack):
    from pipeline.storage import leases

    rec = classify_raw_key(f"{lean_stack.s3.raw_prefix}{DAY}/{ERASED}.wav", lean_stack.s3.raw_prefix)
    lease = leases.acquire(_client(lean_stack), lean_stack, rec)
    _drop(lean_stack, "req-busy.json", json.dumps({"request_id": "req-busy", "call_id": ERASED, "requested_by": "dpo"}).encode())

    report = erasure.process_requests(lean_stack)

    assert report.busy == ["req-busy"] and report.done == {}
    assert ("calls", ERASED) in _curated_rows(lean_stack)  # untouched, and the request waits
    assert object_store.object_size(_client(lean_stack), lean_stack.s3.curated_bucket,
                                    erasure_request_key(lean_stack.s3.ops_prefix, "req-busy")) is not None
    leases.release(_client(lean_stack), lean_stack, lease)
    assert erasure.process_requests(lean_stack).done["req-busy"]["removed"]["manifests"] == 1


def test_the_erasure_dag_works_through_dropped_requests(stack, airflow_home, monkeypatch):
    from airflow_env import use_settings

    from pipeline.devtools.demo import run_dag, task_result

    settings = use_settings(monkeypatch, stack)
    _drop(settings, "req-dag-1.json", json.dumps(
        {"request_id": "req-dag-1", "call_id": ERASED, "requested_by": "dpo", "requested_at": "2024-06-01T10:00:00+00:00"}).encode())
    _drop(settings, "req-dag-2.json", json.dumps({"request_id": "req-dag-2", "call_id": "../x", "requested_by": "dpo"}).encode())
    marts_before = _marts_rows(settings.marts.duckdb_path)

    run = run_dag("callaffect_erasure")

    assert run.state == "success"
    erased = task_result(run, "erase")
    assert list(erased["done"]) == ["req-dag-1"] and len(erased["rejected"]) == 1
    assert task_result(run, "finish")["requests"] == ["req-dag-1"]
    assert _naming(settings, ERASED) == []
    assert _marts_rows(settings.marts.duckdb_path) == _without(marts_before, {ERASED})
    record = erasure.read_record(settings, "req-dag-1")
    assert record["requested_at"] == "2024-06-01T10:00:00+00:00" and record["within_deadline"] is False
    assert record["marts"]["verified"] is True

    quiet = run_dag("callaffect_erasure")  # nothing waits: erase finds nothing, finish skips

    assert quiet.state == "success" and task_result(quiet, "erase")["done"] == {}
    assert {ti.task_id: ti.state for ti in quiet.get_task_instances()}["finish"] == "skipped"
