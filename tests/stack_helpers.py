"""Helpers for tests on the local stack: raw uploads, a fast stand-in analysis that Ray
workers import by name (tests/ is on their path, see conftest), and curated snapshots."""

from __future__ import annotations

import io
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
from factories import make_call_tables

from pipeline.call.exports import CallResult
from pipeline.jobs.batch import process_recording
from pipeline.manifest import CallManifest
from pipeline.schemas import SCHEMA_VERSION
from pipeline.storage import object_store
from pipeline.storage.keys import classify_raw_key

DAY = "2024-05-02"


def tables_analyze(media_path, call_id, *, settings, call_date, metadata=None, source_uri=None, **_) -> CallResult:
    """Valid tables in milliseconds, after ``CALLAFFECT_TEST_ANALYZE_S`` seconds of "work"; each
    analysis is appended to a log named after the raw bucket, so a test can count them."""
    time.sleep(float(os.environ.get("CALLAFFECT_TEST_ANALYZE_S", "0")))
    with open(Path(tempfile.gettempdir()) / f"analyses-{settings.s3.raw_bucket}.log", "a") as log:
        log.write(f"{call_id} {os.getpid()} {Path(media_path).parent}\n")
    tables = make_call_tables(call_id, call_date, duration_s=60.0, seed=len(call_id))
    manifest = CallManifest(call_id=call_id, status="ok", sha256="e" * 64, duration_s=60.0, schema_version=SCHEMA_VERSION)
    return CallResult(manifest, tables)


def analyses_of(settings) -> list[str]:
    path = Path(tempfile.gettempdir()) / f"analyses-{settings.s3.raw_bucket}.log"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def put_raw(settings, key: str, body: bytes = b"RIFF-audio") -> None:
    object_store.put_bytes(object_store.s3_client(settings.s3), settings.s3.raw_bucket, key, body)


def put_calls(settings, call_ids, day=DAY) -> None:
    for call_id in call_ids:
        put_raw(settings, f"{settings.s3.raw_prefix}{day}/{call_id}.wav")


def commit_valid_call(settings, call_id: str, day: str = DAY) -> None:
    put_calls(settings, [call_id], day)
    rec = classify_raw_key(f"{settings.s3.raw_prefix}{day}/{call_id}.wav", settings.s3.raw_prefix)
    assert process_recording(rec, settings, tables_analyze).manifest.status == "ok"


def read_curated_parquet(settings, key: str) -> pq.ParquetFile:
    client = object_store.s3_client(settings.s3)
    return pq.ParquetFile(io.BytesIO(object_store.get_bytes(client, settings.s3.curated_bucket, key)))


def curated_snapshot(settings) -> dict[str, tuple[str, datetime]]:
    client = object_store.s3_client(settings.s3)
    return {o.key: (o.etag, o.last_modified) for o in object_store.list_objects(client, settings.s3.curated_bucket)}
