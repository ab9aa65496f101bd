"""The batch: find recordings with no committed output, analyse each one as a Ray task, commit.

A call is committed when its manifest exists; the manifest is written after all of the call's
Parquet files, so a call that dies half-way has no manifest and is picked up again next run.
Keys are deterministic (pipeline.layout), so re-running a call overwrites and never duplicates.
Status ``ok`` or ``quarantined`` both count as committed: a quarantined call waits for an
operator (``run_batch(..., recordings=[...], reprocess=True)``), not for the next night.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.layout import MANIFESTS, RawRecording, manifest_key, parse_manifest_key, parse_raw_key, table_key
from pipeline.manifest import CallManifest
from pipeline.schemas import TABLES
from pipeline.settings import RaySettings, Settings

log = logging.getLogger(__name__)

AnalyzeFn = Callable[..., typing.Any]  # pipeline.analyze.analyze_call's signature, returns CallResult

# Ray retries a task whose worker died (node lost, OOM kill) this many times; a call that kills
# its worker every time is then quarantined rather than retried every night.
_TASK_MAX_RETRIES = 1


@dataclass
class BatchReport:
    ok: list[str] = field(default_factory=list)  # call ids committed with status ok
    quarantined: dict[str, str] = field(default_factory=dict)  # call id -> reason
    failed: dict[str, str] = field(default_factory=dict)  # not committed (e.g. S3 error): retried next run
    skipped: list[str] = field(default_factory=list)  # given explicitly but already committed
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def recording_to_dict(rec: RawRecording) -> dict:
    """JSON-serialisable form (Airflow XCom)."""
    return dataclasses.asdict(rec)


def recording_from_dict(data: dict | RawRecording) -> RawRecording:
    return data if isinstance(data, RawRecording) else RawRecording(**data)


def settings_from_dict(data: dict | Settings) -> Settings:
    """Inverse of Settings.to_dict (settings travel to Ray tasks as plain data)."""
    return data if isinstance(data, Settings) else Settings.from_dict(data)


def _manifest_prefix(settings: Settings) -> str:
    return f"{settings.s3.curated_prefix}{MANIFESTS}/"


def _committed(settings: Settings, client) -> set[tuple[str, str]]:
    """(call_date, call_id) of every committed call."""
    s3 = settings.s3
    found = set()
    for obj in storage.list_objects(client, s3.curated_bucket, _manifest_prefix(settings)):
        parsed = parse_manifest_key(obj.key, s3.curated_prefix)
        if parsed:
            found.add(parsed)
    return found


def list_recordings(settings: Settings, client=None) -> list[RawRecording]:
    """Every raw recording, sorted by date then call id."""
    s3 = settings.s3
    client = client or storage.s3_client(s3)
    recs: dict[tuple[str, str], RawRecording] = {}
    for obj in storage.list_objects(client, s3.raw_bucket, s3.raw_prefix):
        rec = parse_raw_key(obj.key, s3.raw_prefix, obj.size, obj.etag)
        if rec is None:
            continue
        ident = (rec.call_date, rec.call_id)
        if ident in recs:
            # Two files for one call (e.g. .wav and .mp3) would write the same output keys.
            log.warning("ignoring %s: call %s already has %s", rec.key, rec.call_id, recs[ident].key)
            continue
        recs[ident] = rec
    return [recs[k] for k in sorted(recs)]


def discover_pending(settings: Settings, client=None) -> list[RawRecording]:
    """Raw recordings with no committed manifest (ok or quarantined), sorted by date then call id."""
    client = client or storage.s3_client(settings.s3)
    committed = _committed(settings, client)
    return [r for r in list_recordings(settings, client) if (r.call_date, r.call_id) not in committed]


def read_manifest(settings: Settings, call_date: str, call_id: str, client=None) -> CallManifest | None:
    s3 = settings.s3
    client = client or storage.s3_client(s3)
    key = manifest_key(s3.curated_prefix, call_date, call_id)
    if not storage.object_exists(client, s3.curated_bucket, key):
        return None
    return CallManifest.from_json(storage.get_bytes(client, s3.curated_bucket, key))


def list_manifests(settings: Settings, client=None) -> list[CallManifest]:
    """Every committed call's manifest, sorted by date then call id."""
    client = client or storage.s3_client(settings.s3)
    return [read_manifest(settings, d, c, client) for d, c in sorted(_committed(settings, client))]


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _quarantine(rec: RawRecording, reason: str, sha256: str | None = None) -> CallManifest:
    return CallManifest(call_id=rec.call_id, status="quarantined", reason=reason, sha256=sha256)


def _error_text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()  # a reason is one line; Ray's messages are paragraphs
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _conform(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """Check the analysis produced known tables in their schemas (raises on a mismatch: a bug)."""
    out = {}
    for name, table in tables.items():
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}")
        out[name] = table.cast(TABLES[name])
    return out


def _read_metadata(client, settings: Settings, rec: RawRecording) -> tuple[dict | None, str | None]:
    """The call's metadata JSON (or None) and, if it is unreadable, the quarantine reason."""
    bucket = settings.s3.raw_bucket
    if not storage.object_exists(client, bucket, rec.metadata_key):
        return None, None
    try:
        metadata = json.loads(storage.get_bytes(client, bucket, rec.metadata_key))
    except ValueError as exc:
        return None, f"metadata {rec.metadata_key} is not valid JSON: {exc}"
    if not isinstance(metadata, dict):
        return None, f"metadata {rec.metadata_key} is not a JSON object"
    return metadata, None


def _commit(
    client, settings: Settings, rec: RawRecording, manifest: CallManifest, tables: dict[str, pa.Table]
) -> CallManifest:
    """Write the call's tables, then its manifest (the commit), then drop tables of older runs."""
    s3 = settings.s3
    manifest.source_uri = f"s3://{s3.raw_bucket}/{rec.key}"
    manifest.call_date = rec.call_date  # the partition the keys use
    manifest.created_at = manifest.created_at or _now()
    manifest.table_keys, manifest.tables = {}, {}
    for name, table in tables.items():
        key = table_key(s3.curated_prefix, name, rec.call_date, rec.call_id)
        storage.put_bytes(client, s3.curated_bucket, key, _parquet_bytes(table))
        manifest.table_keys[name] = key
        manifest.tables[name] = table.num_rows
    mkey = manifest_key(s3.curated_prefix, rec.call_date, rec.call_id)
    storage.put_bytes(client, s3.curated_bucket, mkey, manifest.to_json().encode(), "application/json")
    # A re-run that produced fewer tables (or a quarantine) must not leave an older run's rows.
    for name in TABLES.keys() - tables.keys():
        storage.delete_object(client, s3.curated_bucket, table_key(s3.curated_prefix, name, rec.call_date, rec.call_id))
    return manifest


def work_dir(source_uri: str, call_id: str) -> Path:
    """Local scratch space of one recording on the node that analyses it."""
    tag = hashlib.sha1(source_uri.encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / "callaffect-work" / f"{call_id}-{tag}"


def _default_analyze() -> AnalyzeFn:
    from pipeline.analyze import analyze_call  # heavy (models); only where calls are analysed

    return analyze_call


def process_recording(
    rec: RawRecording | dict, settings: Settings | dict, analyze_fn: AnalyzeFn | None = None, clip=None
) -> CallManifest:
    """Analyse one raw recording and commit it (the body of a Ray task).

    ``clip`` (a pipeline.vision.ClipModel) is the batch's shared heavy clip model, if any.
    Any exception from the analysis becomes a quarantined manifest, so one bad call never sinks
    the batch. Exceptions from S3 propagate: the call stays uncommitted and is retried.
    """
    rec, settings = recording_from_dict(rec), settings_from_dict(settings)
    # Resolved outside the try: a broken install must leave calls pending, not quarantine them all.
    analyze_fn = analyze_fn or _default_analyze()
    s3 = settings.s3
    source_uri = f"s3://{s3.raw_bucket}/{rec.key}"
    client = storage.s3_client(s3)
    # One work dir per call, not a random one: a worker killed mid-call (OOM) cannot clean up,
    # and the retry of that call then removes what it left. (A call is never run twice at once.)
    work = work_dir(source_uri, rec.call_id)
    shutil.rmtree(work, ignore_errors=True)
    try:
        media = storage.download_to(client, s3.raw_bucket, rec.key, work / posixpath.basename(rec.key))
        metadata, bad_metadata = _read_metadata(client, settings, rec)
        tables: dict[str, pa.Table] = {}
        if bad_metadata:
            manifest = _quarantine(rec, bad_metadata, _sha256(media))
        else:
            try:
                result = analyze_fn(
                    media, rec.call_id, settings=settings, call_date=rec.call_date, metadata=metadata,
                    source_uri=source_uri, **({"clip": clip} if clip is not None else {}),
                )
                manifest = result.manifest
                if manifest.status == "ok":
                    tables = _conform(result.tables)
            except Exception as exc:  # noqa: BLE001 - a bug or MemoryError in one call, not the batch
                log.exception("analysis of %s failed", rec.call_id)
                manifest = _quarantine(rec, f"internal error: {_error_text(exc)}", _sha256(media))
                tables = {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _commit(client, settings, rec, manifest, tables)


def _ensure_ray(ray_settings: RaySettings) -> None:
    import ray

    if ray.is_initialized():
        return
    if ray_settings.address is not None:
        ray.init(address=ray_settings.address)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init()  # the operator pointed this process at a cluster
    else:
        ray.init(address="local", num_cpus=ray_settings.local_num_cpus, include_dashboard=False)


def _shared_clip_model(settings: Settings):
    """The heavy clip model as one actor for the whole batch (clips batched across calls)."""
    from pipeline import clip_server

    server = clip_server.start_clip_server(settings)
    if server is None:
        return None
    import ray

    from pipeline.vision import ClipModel, provider_device

    classes, version, providers = ray.get(server.describe.remote())
    return ClipModel(classify=clip_server.RemoteClassify(server), classes=classes, version=version,
                     device=provider_device(providers))


def _filter_committed(
    settings: Settings, client, recs: Iterable[RawRecording], report: BatchReport
) -> list[RawRecording]:
    committed = _committed(settings, client)
    keep = []
    for rec in recs:
        if (rec.call_date, rec.call_id) in committed:
            report.skipped.append(rec.call_id)
        else:
            keep.append(rec)
    return keep


def run_batch(
    settings: Settings,
    *,
    recordings: list[RawRecording | dict] | None = None,
    limit: int | None = None,
    analyze_fn: AnalyzeFn | None = None,
    reprocess: bool = False,
) -> BatchReport:
    """Analyse recordings as Ray tasks and commit each; pending ones are discovered when not given.

    Given recordings that are already committed are skipped unless ``reprocess`` (so an Airflow
    retry of a batch does not redo finished calls).
    """
    import ray

    started = time.monotonic()
    report = BatchReport()
    client = storage.s3_client(settings.s3)
    if recordings is None:
        recs = discover_pending(settings, client)
    else:
        recs = [recording_from_dict(r) for r in recordings]
        if not reprocess:
            recs = _filter_committed(settings, client, recs, report)
    if limit is not None:
        recs = recs[:limit]
    if not recs:
        report.seconds = time.monotonic() - started
        return report

    _ensure_ray(settings.ray)
    task = ray.remote(process_recording).options(
        num_cpus=settings.ray.num_cpus_per_call, max_retries=_TASK_MAX_RETRIES
    )
    settings_ref = ray.put(settings.to_dict())
    clip = _shared_clip_model(settings)
    per_call = settings.ray.num_cpus_per_call or 1.0
    # Enough queued to keep every worker busy, without putting thousands of tasks in flight.
    max_in_flight = 2 * max(1, int(ray.cluster_resources().get("CPU", 1) / per_call))
    queue = iter(recs)
    in_flight: dict = {}

    def submit_next() -> None:
        rec = next(queue, None)
        if rec is not None:
            in_flight[task.remote(rec, settings_ref, analyze_fn, clip)] = rec

    for _ in range(max_in_flight):
        submit_next()
    done = 0
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            rec = in_flight.pop(ref)
            done += 1
            try:
                manifest = ray.get(ref)
            except (ray.exceptions.OutOfMemoryError, ray.exceptions.WorkerCrashedError) as exc:
                manifest = _commit(client, settings, rec, _quarantine(rec, f"internal error: {_error_text(exc)}"), {})
            except ray.exceptions.RayError as exc:
                error = _error_text(getattr(exc, "cause", None) or exc)
                report.failed[rec.call_id] = error
                log.warning("[%d/%d] %s not committed, retried next run: %s", done, len(recs), rec.call_id, error)
                submit_next()
                continue
            if manifest.status == "ok":
                report.ok.append(rec.call_id)
            else:
                report.quarantined[rec.call_id] = manifest.reason or ""
            reason = f": {manifest.reason}" if manifest.reason else ""
            log.info("[%d/%d] %s %s%s", done, len(recs), rec.call_id, manifest.status, reason)
            submit_next()
    report.seconds = time.monotonic() - started
    log.info(
        "batch: %d ok, %d quarantined, %d failed in %.1fs",
        len(report.ok), len(report.quarantined), len(report.failed), report.seconds,
    )
    return report
