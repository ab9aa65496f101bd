"""The batch: find recordings with no committed output, analyse each one as a Ray task, commit.

A call is committed when its manifest exists (pipeline.storage.curated writes it after all of
the call's Parquet files), so a call that dies half-way has no manifest and is picked up again
next run; its keys are deterministic, so re-running a call overwrites and never duplicates.
Status ``ok`` or ``quarantined`` both count as committed: a quarantined call waits for an
operator (``run_batch(..., recordings=[...], reprocess=True)``), not for the next night.

Backfill (``run_batch(..., dates=DateRange, mode=...)``, ``callaffect batch --dates A..B``): the
recordings of a range of call dates, in one of three modes (``select_recordings``): ``pending``
(not committed yet), ``reprocess`` (every one, committed or not) or ``stale`` (committed under
other model versions, rule version or settings than the current settings would use:
``stale_reasons``). A committed call whose raw media is gone (retention) cannot be reprocessed:
it is reported, never selected.

Every raw object ends as processed, quarantined with a reason, a metadata sidecar, or ignored
with a reason (``discover``). A call is analysed under a lease (pipeline.storage.leases), so two batches
never analyse it at once; a call that fails to commit in ``ray.max_call_failures`` runs
(worker crashes, S3 errors) is quarantined with ``failed N times: <last error>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import posixpath
import shutil
import tempfile
import time
import typing
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

from pipeline import metadata as call_metadata
from pipeline.clock import utc_now
from pipeline.digests import file_sha256
from pipeline.manifest import CallManifest
from pipeline.records import ClipModel
from pipeline.schemas import TABLES
from pipeline.settings import Settings
from pipeline.storage import leases, object_store
from pipeline.storage.curated import CuratedStore
from pipeline.storage.keys import (
    NotARecording,
    parse_raw_key,
    RawRecording,
    classify_raw_key,
    failures_key,
    ignored_key,
    reupload_note_key,
    tombstone_key,
)

log = logging.getLogger(__name__)

AnalyzeFn = Callable[..., typing.Any]  # pipeline.call.analyze.analyze_call's signature, returns CallResult

# Ray retries a task whose worker died (node lost, OOM kill) this many times within a run; runs
# that still fail count towards ray.max_call_failures.
_TASK_MAX_RETRIES = 1
# Scratch space for media on the node that analyses a call: one private folder per call and process.
WORK_ROOT = Path(tempfile.gettempdir()) / "callaffect-work"


@dataclass
class BatchReport:
    ok: list[str] = field(default_factory=list)  # call ids committed with status ok
    quarantined: dict[str, str] = field(default_factory=dict)  # call id -> reason
    failed: dict[str, str] = field(default_factory=dict)  # not committed (e.g. S3 error): retried next run
    skipped: list[str] = field(default_factory=list)  # given explicitly but already committed
    busy: dict[str, str] = field(default_factory=dict)  # being analysed by another batch right now
    ignored: dict[str, str] = field(default_factory=dict)  # raw key -> why it is not a recording
    # Copies of content erased on request (pipeline.jobs.erasure): deleted, never analysed. A
    # count only: the copy's name may be the erased call's id.
    erased: int = 0
    seconds: float = 0.0
    # Backfill: calls selected but whose raw media is gone (call id -> why), and why each
    # selected call was selected ("stale: ..." reasons; "pending"; "reprocess").
    not_reprocessable: dict[str, str] = field(default_factory=dict)
    selected: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class CallOutcome:
    """What one task did with one recording: committed a manifest, or left the call alone."""

    call_id: str
    manifest: CallManifest | None = None
    skipped: str | None = None  # "committed", "gone", "erased", or who holds the call's lease


@dataclass
class Discovery:
    pending: list[RawRecording] = field(default_factory=list)
    rejected: list[tuple[RawRecording, str]] = field(default_factory=list)  # quarantined at discovery
    ignored: list[NotARecording] = field(default_factory=list)


def recording_to_dict(rec: RawRecording) -> dict:
    """JSON-serialisable form (Airflow XCom)."""
    return dataclasses.asdict(rec)


def recording_from_dict(data: dict | RawRecording) -> RawRecording:
    return data if isinstance(data, RawRecording) else RawRecording(**data)


def settings_from_dict(data: dict | Settings) -> Settings:
    """Inverse of Settings.to_dict (settings travel to Ray tasks as plain data)."""
    return data if isinstance(data, Settings) else Settings.from_dict(data)


def discover(settings: Settings, client=None) -> Discovery:
    """Sort every raw object: pending recordings, calls to quarantine now, and the rest.

    A call id is one call: a recording whose call id is committed under another date, or
    pending under an earlier one, is rejected (it would collide in the marts), and so is a call
    with two media files (which one is the call?). Sorted by date then call id.
    """
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    store = CuratedStore(settings, client=client)
    committed = store.committed_calls()
    committed_dates: dict[str, set[str]] = defaultdict(set)
    for day, call_id in committed:
        committed_dates[call_id].add(day)
    media: dict[tuple[str, str], list[RawRecording]] = defaultdict(list)
    sidecars: dict[tuple[str, str], NotARecording] = {}
    found = Discovery()
    for obj in object_store.list_objects(client, s3.raw_bucket, s3.raw_prefix):
        item = classify_raw_key(obj.key, s3.raw_prefix, obj.size, obj.etag)
        if isinstance(item, RawRecording):
            media[(item.call_date, item.call_id)].append(item)
        elif item.kind == "sidecar":
            day, name = obj.key[len(s3.raw_prefix):].split("/")
            sidecars[(day, name.removesuffix(".json"))] = item
        else:
            found.ignored.append(item)
    raw_dates: dict[str, set[str]] = defaultdict(set)
    for day, call_id in media:
        raw_dates[call_id].add(day)
    for ident in set(sidecars) - set(media) - committed:
        found.ignored.append(dataclasses.replace(sidecars[ident], kind="ignored", reason="metadata without a recording"))
    for (day, call_id), recs in sorted(media.items()):
        recs.sort(key=lambda r: r.key)
        if (day, call_id) in committed:
            if len(recs) > 1:
                found.ignored += _extra_media(settings, store, day, call_id, recs)
            continue
        taken = sorted(d for d in committed_dates[call_id] | raw_dates[call_id] if d != day
                       and (d in committed_dates[call_id] or d < day))
        if taken:
            found.rejected.append((recs[0], f"call id {call_id} is already used by the recording of {taken[0]}"))
        elif len(recs) > 1:
            names = ", ".join(posixpath.basename(r.key) for r in recs)
            found.rejected.append((recs[0], f"{len(recs)} media files for one call ({names}): keep one and reprocess"))
        else:
            found.pending.append(recs[0])
    found.ignored.sort(key=lambda i: i.key)
    return found


def _extra_media(settings: Settings, store: CuratedStore, day: str, call_id: str,
                 recs: list[RawRecording]) -> list[NotARecording]:
    """Media files of a committed call other than the one it was committed from."""
    manifest = store.read_manifest(day, call_id)
    source = manifest.source_uri if manifest else None
    return [
        NotARecording(r.key, "ignored", f"call {call_id} is already committed from another file")
        for r in recs if source != f"s3://{settings.s3.raw_bucket}/{r.key}"
    ]


def settle_discovery(settings: Settings, found: Discovery, client=None) -> dict[str, str]:
    """Commit the rejected calls as quarantined and record the ignored objects under the ops
    prefix (one small object per raw key, overwritten: idempotent). Returns call id -> reason."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    quarantined = {}
    for rec, reason in found.rejected:
        _commit(client, settings, rec, CallManifest(rec.call_id).quarantine(reason), {})
        quarantined[rec.call_id] = reason
        log.warning("%s quarantined at discovery: %s", rec.call_id, reason)
    for item in found.ignored:
        body = json.dumps({"bucket": s3.raw_bucket, "key": item.key, "reason": item.reason, "seen_at": utc_now().isoformat()})
        object_store.put_bytes(client, s3.curated_bucket, ignored_key(s3.ops_prefix, item.key), body.encode(), "application/json")
    if found.ignored:
        log.warning("%d raw object(s) ignored, listed under s3://%s/%signored/", len(found.ignored), s3.curated_bucket, s3.ops_prefix)
    return quarantined


def discover_pending(settings: Settings, client=None) -> list[RawRecording]:
    """Raw recordings with no committed manifest that can be analysed, sorted by date then call id."""
    return discover(settings, client).pending


# --- backfill: a date range, and which of its calls to (re)process ------------------------------

Mode = typing.Literal["pending", "reprocess", "stale"]
MODES: tuple[str, ...] = typing.get_args(Mode)
RAW_MEDIA_GONE = "not reprocessable: raw media deleted by retention"


@dataclass(frozen=True)
class DateRange:
    """Call dates ``first``..``last``, both included (ISO strings compare as dates)."""

    first: str
    last: str

    @classmethod
    def parse(cls, text: str) -> "DateRange":
        """"2026-11-01..2026-11-07" or one day "2026-11-01"; ValueError naming the problem."""
        first, sep, last = text.strip().partition("..")
        last = last if sep else first
        for day in (first, last):
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ValueError(f"dates {text!r}: expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD") from None
            if len(day) != 10:
                raise ValueError(f"dates {text!r}: expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")
        if last < first:
            raise ValueError(f"dates {text!r}: the range ends before it starts")
        return cls(first, last)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, str) and self.first <= day <= self.last

    def days(self) -> list[str]:
        start, end = date.fromisoformat(self.first), date.fromisoformat(self.last)
        return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]

    def __str__(self) -> str:
        return self.first if self.first == self.last else f"{self.first}..{self.last}"


def expected_versions(settings: Settings, video: bool = False) -> dict[str, str]:
    """What an analysis under ``settings`` would record in manifest.versions (no model runs)."""
    from pipeline.call.analyze import expected_versions as expected  # heavy imports: only when asked

    return expected(settings, video)


# The face branch's versions: compared only for calls whose manifest has them (calls with video
# and consent, where the face branch ran).
_FACE_KEYS = ("face_detection", "face_expression")


def stale_reasons(manifest: CallManifest, settings: Settings, expected: dict[str, str] | None = None,
                  expected_video: dict[str, str] | None = None) -> list[str]:
    """Why a committed call is stale under the current ``settings``; [] when it is current.

    Stale means, for a call whose analysis ran (its manifest has versions: committed ``ok``, or
    quarantined by the quality gate afterwards):
    - a model version of the audio and text path differs from what the settings give now, or is
      missing (every key of ``expected_versions``, the frustration rule version ``flags`` included);
    - for a call the face branch read (its manifest has face versions), the face detector's or
      light expression model's version differs;
    - or the settings fingerprint (every analysis setting, pipeline.settings.Settings.fingerprint)
      differs.
    Not compared: versions known only once a model is loaded, the heavy clip model's, library
    versions recorded but not named by a stage. A call quarantined before any analysis has no
    versions and is never stale (``reprocess`` it).
    """
    if not manifest.versions:
        return []
    want = dict(expected if expected is not None else expected_versions(settings))
    if any(k in manifest.versions for k in _FACE_KEYS):
        video = expected_video if expected_video is not None else expected_versions(settings, video=True)
        want |= {k: video[k] for k in _FACE_KEYS if k in video}
    reasons = []
    for key in sorted(want):
        had = manifest.versions.get(key)
        if had != want[key]:
            what = "rule version" if key == "flags" else "model version"
            reasons.append(f"{key} {what} {had or '(none)'} -> {want[key]}")
    fingerprint = settings.fingerprint()
    if manifest.settings_fingerprint != fingerprint:
        reasons.append(f"settings fingerprint {manifest.settings_fingerprint or '(none)'} -> {fingerprint}")
    return reasons


@dataclass
class Selection:
    """The calls of a backfill: what to analyse and why, and what cannot be."""

    mode: str
    dates: str | None
    selected: list[tuple[RawRecording, str]] = field(default_factory=list)  # (recording, why), date then id
    not_reprocessable: dict[str, str] = field(default_factory=dict)  # call id -> why
    current: list[str] = field(default_factory=list)  # stale mode: committed and current
    discovery: Discovery | None = None  # the uncommitted recordings' sorting, to settle

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "dates": self.dates,
            "selected": [{"call_id": r.call_id, "call_date": r.call_date, "key": r.key, "why": why}
                         for r, why in self.selected],
            "not_reprocessable": dict(self.not_reprocessable),
            "current": list(self.current),
            "quarantine_at_discovery": {r.call_id: why for r, why in self.discovery.rejected} if self.discovery else {},
        }


def _in_dates(found: Discovery, dates: DateRange | None, raw_prefix: str) -> Discovery:
    if dates is None:
        return found
    return Discovery(
        pending=[r for r in found.pending if r.call_date in dates],
        rejected=[(r, why) for r, why in found.rejected if r.call_date in dates],
        ignored=[i for i in found.ignored if i.key[len(raw_prefix):].split("/", 1)[0] in dates],
    )


def select_recordings(settings: Settings, dates: DateRange | None = None, mode: str = "pending",
                      client=None) -> Selection:
    """The recordings a batch over ``dates`` (None: every date) analyses in ``mode``; reads only.

    ``pending``: uncommitted recordings (``discover``). ``reprocess``: those, and every committed
    call of the dates (quarantined ones too). ``stale``: committed calls for which
    ``stale_reasons`` gives a reason. A committed call to reprocess whose recording (the
    manifest's ``source_uri``) is no longer in the raw bucket is listed as not reprocessable.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    selection = Selection(mode=mode, dates=str(dates) if dates else None)
    if mode in ("pending", "reprocess"):
        selection.discovery = _in_dates(discover(settings, client), dates, s3.raw_prefix)
        selection.selected += [(r, "pending") for r in selection.discovery.pending]
    if mode == "pending":
        return selection
    store = CuratedStore(settings, client=client)
    expected = expected_versions(settings) if mode == "stale" else None
    expected_video = expected_versions(settings, video=True) if mode == "stale" else None
    raw_root = f"s3://{s3.raw_bucket}/"
    for _, manifest in store.manifests(dates.days() if dates else None):
        if mode == "stale":
            reasons = stale_reasons(manifest, settings, expected, expected_video)
            if not reasons:
                selection.current.append(manifest.call_id)
                continue
            why = "stale: " + "; ".join(reasons)
        else:
            why = f"reprocess ({manifest.status})"
        source = manifest.source_uri or ""
        rec = parse_raw_key(source[len(raw_root):], s3.raw_prefix) if source.startswith(raw_root) else None
        if rec is None or rec.call_id != manifest.call_id or rec.call_date != manifest.call_date:
            selection.not_reprocessable[manifest.call_id] = f"not reprocessable: no raw recording named in its manifest ({why})"
            continue
        size = object_store.object_size(client, s3.raw_bucket, rec.key)
        if size is None:
            selection.not_reprocessable[manifest.call_id] = f"{RAW_MEDIA_GONE} ({why})"
            continue
        selection.selected.append((dataclasses.replace(rec, size=size), why))
    selection.selected.sort(key=lambda item: (item[0].call_date, item[0].call_id))
    return selection


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


def _read_metadata(client, settings: Settings, rec: RawRecording) -> call_metadata.CallMetadata:
    """The call's metadata under the contract (defaults when there is none), or MetadataError."""
    bucket = settings.s3.raw_bucket
    size = object_store.object_size(client, bucket, rec.metadata_key)
    if size is None:
        return call_metadata.CallMetadata()
    if size > call_metadata.MAX_BYTES:  # checked before reading: a sidecar must not cost memory
        raise call_metadata.MetadataError(f"metadata is {size} bytes, over the {call_metadata.MAX_BYTES}-byte limit")
    return call_metadata.parse(object_store.get_bytes(client, bucket, rec.metadata_key))


def _commit(
    client, settings: Settings, rec: RawRecording, manifest: CallManifest, tables: dict[str, pa.Table],
    snippets: dict[str, bytes] | None = None,
) -> CallManifest:
    """Commit the call from ``rec`` to the curated bucket, then forget its failed runs."""
    s3 = settings.s3
    manifest.source_uri = f"s3://{s3.raw_bucket}/{rec.key}"
    manifest.call_date = rec.call_date  # the partition the keys use
    CuratedStore(settings, client=client).commit(manifest, tables, snippets)
    # Committed: earlier failed runs no longer count.
    object_store.delete_object(client, s3.curated_bucket, failures_key(s3.ops_prefix, rec.call_date, rec.call_id))
    return manifest


def _owner_alive(folder: Path) -> bool:
    pid = folder.name.split("-", 1)[0]
    # A name not of ours (or an older layout): nobody is using it.
    return pid.isdigit() and leases.process_alive(int(pid))


@contextlib.contextmanager
def call_work_dir() -> Iterator[Path]:
    """A private (0700) scratch folder for one call, removed on exit; folders left by processes
    that died (a killed worker cannot clean up) are removed first."""
    WORK_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    WORK_ROOT.chmod(0o700)
    for stale in WORK_ROOT.iterdir():
        if not _owner_alive(stale):
            shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=WORK_ROOT))  # mkdtemp: mode 0700
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _default_analyze() -> AnalyzeFn:
    from pipeline.call.analyze import analyze_call  # heavy (models); only where calls are analysed

    return analyze_call


def _quarantined(rec: RawRecording, reason: str, media: Path) -> CallManifest:
    return CallManifest(rec.call_id, sha256=file_sha256(media)).quarantine(reason)


def _erased_copy(client, settings: Settings, rec: RawRecording, media: Path) -> bool:
    """Whether the downloaded media is content erased on request (a tombstone holds its sha256).
    Such a copy is never analysed: it is deleted with its metadata, every version, and the
    deletion noted beside the erasure record (no id: the copy may bear the erased call's)."""
    s3 = settings.s3
    sha256 = file_sha256(media)
    found = object_store.get_bytes_and_etag(client, s3.curated_bucket, tombstone_key(s3.ops_prefix, sha256))
    if found is None:
        return False
    request_id = json.loads(found[0])["request_id"]
    versions = sum(object_store.purge_key(client, s3.raw_bucket, key) for key in (rec.key, rec.metadata_key))
    now = utc_now()
    note = {"sha256": sha256, "deleted_at": now.isoformat(), "raw_bucket": s3.raw_bucket, "versions_deleted": versions}
    object_store.put_bytes(client, s3.curated_bucket, reupload_note_key(s3.ops_prefix, request_id, now, uuid.uuid4().hex),
                           json.dumps(note, sort_keys=True).encode(), "application/json")
    log.warning("a recording held content erased by request %s: deleted, not analysed", request_id)
    return True


def _analyse(client, settings: Settings, rec: RawRecording, work: Path, analyze_fn: AnalyzeFn,
             clip) -> tuple[CallManifest, dict[str, pa.Table], dict[str, bytes]] | None:
    """Download and analyse one recording. Bad input and errors inside the analysis become a
    quarantined manifest; S3 errors propagate (the call stays uncommitted). None: the media is a
    copy of erased content, deleted unanalysed."""
    s3 = settings.s3
    media = object_store.download_to(client, s3.raw_bucket, rec.key, work / posixpath.basename(rec.key))
    if _erased_copy(client, settings, rec, media):
        return None
    try:
        metadata = _read_metadata(client, settings, rec)
    except call_metadata.MetadataError as exc:
        return _quarantined(rec, str(exc), media), {}, {}
    try:
        result = analyze_fn(
            media, rec.call_id, settings=settings, call_date=rec.call_date, metadata=metadata,
            source_uri=f"s3://{s3.raw_bucket}/{rec.key}", **({"clip": clip} if clip is not None else {}),
        )
        manifest = result.manifest
        if manifest.status != "ok":
            return manifest, {}, {}
        return manifest, _conform(result.tables), result.snippets
    except Exception as exc:  # noqa: BLE001 - a bug or MemoryError in one call, not the batch
        log.exception("analysis of %s failed", rec.call_id)
        return _quarantined(rec, f"internal error: {_error_text(exc)}", media), {}, {}


def process_recording(
    rec: RawRecording | dict, settings: Settings | dict, analyze_fn: AnalyzeFn | None = None, clip=None,
    reprocess: bool = False,
) -> CallOutcome:
    """Analyse one raw recording under its lease and commit it (the body of a Ray task).

    ``clip`` (a pipeline.records.ClipModel) is the batch's shared heavy clip model, if any. A call
    leased by another batch, or committed meanwhile (unless ``reprocess``), is left alone.
    """
    rec, settings = recording_from_dict(rec), settings_from_dict(settings)
    # Resolved outside the lease: a broken install must leave calls pending, not quarantine them all.
    analyze_fn = analyze_fn or _default_analyze()
    client = object_store.s3_client(settings.s3)
    if object_store.object_size(client, settings.s3.raw_bucket, rec.key) is None:
        # Deleted since discovery (erasure, retention): no lease, no failure count, which would
        # name the call again.
        return CallOutcome(rec.call_id, skipped="gone")
    lease = leases.acquire(client, settings, rec)
    if isinstance(lease, leases.Busy):
        return CallOutcome(rec.call_id, skipped=str(lease))
    try:
        if not reprocess and CuratedStore(settings, client=client).read_manifest(rec.call_date, rec.call_id) is not None:
            return CallOutcome(rec.call_id, skipped="committed")
        with call_work_dir() as work:
            analysed = _analyse(client, settings, rec, work, analyze_fn, clip)
        if analysed is None:
            return CallOutcome(rec.call_id, skipped="erased")
        manifest, tables, snippets = analysed
        return CallOutcome(rec.call_id, _commit(client, settings, rec, manifest, tables, snippets))
    finally:
        leases.release(client, settings, lease)


def record_failure(client, settings: Settings, rec: RawRecording, error: str) -> CallManifest | None:
    """Count a run that failed to commit the call; at ``ray.max_call_failures`` quarantine it.
    Returns the quarantined manifest, or None while the call is still to be retried."""
    s3 = settings.s3
    key = failures_key(s3.ops_prefix, rec.call_date, rec.call_id)
    found = object_store.get_bytes_and_etag(client, s3.curated_bucket, key)
    history = json.loads(found[0]) if found else {"failures": []}
    history["failures"] = [*history["failures"], {"at": utc_now().isoformat(), "error": error}]
    count = len(history["failures"])
    if count >= settings.ray.max_call_failures:
        return _commit(client, settings, rec, CallManifest(rec.call_id).quarantine(f"failed {count} times: {error}"), {})
    object_store.put_bytes(client, s3.curated_bucket, key, json.dumps(history).encode(), "application/json")
    return None


def _shared_clip_model(settings: Settings):
    """The heavy clip model as one actor for the whole batch (clips batched across calls)."""
    from pipeline.compute import clip_server

    server = clip_server.start_clip_server(settings)
    if server is None:
        return None
    import ray

    from pipeline.stages.vision.face_branch import provider_device

    classes, version, providers = ray.get(server.describe.remote())
    return ClipModel(classify=clip_server.RemoteClassify(server), classes=classes, version=version,
                     device=provider_device(providers))


def _filter_committed(
    settings: Settings, client, recs: Iterable[RawRecording], report: BatchReport
) -> list[RawRecording]:
    committed = CuratedStore(settings, client=client).committed_calls()
    keep = []
    for rec in recs:
        if (rec.call_date, rec.call_id) in committed:
            report.skipped.append(rec.call_id)
        else:
            keep.append(rec)
    return keep


def _record(report: BatchReport, rec: RawRecording, outcome: CallOutcome) -> str:
    """Put one task's outcome in the report; returns the log line's tail."""
    if outcome.skipped == "committed":
        report.skipped.append(rec.call_id)
        return "skipped: committed meanwhile"
    if outcome.skipped == "gone":
        report.skipped.append(rec.call_id)
        return "skipped: deleted since discovery"
    if outcome.skipped == "erased":
        report.erased += 1
        return "not analysed: a copy of content erased on request (deleted)"
    if outcome.skipped is not None:
        report.busy[rec.call_id] = outcome.skipped
        return f"skipped: {outcome.skipped}"
    manifest = outcome.manifest
    if manifest.status == "ok":
        report.ok.append(rec.call_id)
    else:
        report.quarantined[rec.call_id] = manifest.reason or ""
    return manifest.status + (f": {manifest.reason}" if manifest.reason else "")


class BatchProgress(typing.Protocol):
    """Hears how a batch goes (the CLI's progress bar)."""

    def start(self, total: int) -> None: ...

    def done(self, call_id: str, outcome: str) -> None:
        """``outcome``: ok, quarantined, failed, busy, skipped or erased."""


def _outcome_kind(report: BatchReport, call_id: str) -> str:
    for kind, found in (("ok", report.ok), ("quarantined", report.quarantined), ("failed", report.failed),
                        ("busy", report.busy), ("skipped", report.skipped)):
        if call_id in found:
            return kind
    return "erased"


def _failed(client, settings: Settings, report: BatchReport, rec: RawRecording, error: str) -> str:
    """A task that raised (S3 error, crashed worker): count it, and quarantine at the limit."""
    try:
        quarantined = record_failure(client, settings, rec, error)
    except Exception as exc:  # noqa: BLE001 - S3 down: the count waits for the next run
        quarantined = None
        error = f"{error} (failure not recorded: {_error_text(exc)})"
    if quarantined is not None:
        report.quarantined[rec.call_id] = quarantined.reason or ""
        return f"quarantined: {quarantined.reason}"
    report.failed[rec.call_id] = error
    return f"not committed, retried next run: {error}"


def run_batch(
    settings: Settings,
    *,
    recordings: list[RawRecording | dict] | None = None,
    limit: int | None = None,
    analyze_fn: AnalyzeFn | None = None,
    reprocess: bool = False,
    dates: DateRange | None = None,
    mode: str = "pending",
    progress: BatchProgress | None = None,
) -> BatchReport:
    """Analyse recordings as Ray tasks and commit each; when not given, they are selected by
    ``select_recordings(settings, dates, mode)`` (default: every pending recording).

    Given recordings that are already committed are skipped unless ``reprocess`` (so an Airflow
    retry of a batch does not redo finished calls); modes ``reprocess`` and ``stale`` reprocess.
    ``progress`` hears of the number of calls, then of each call's outcome.
    """
    import ray

    from pipeline.compute import ray_cluster

    started = time.monotonic()
    report = BatchReport()
    client = object_store.s3_client(settings.s3)
    if recordings is None:
        selection = select_recordings(settings, dates, mode, client)
        if selection.discovery is not None:
            found = selection.discovery
            report.quarantined.update(settle_discovery(settings, found, client))
            report.ignored = {item.key: item.reason for item in found.ignored}
        report.not_reprocessable = dict(selection.not_reprocessable)
        for call_id, why in report.not_reprocessable.items():
            log.warning("%s %s", call_id, why)
        recs = [rec for rec, _ in selection.selected]
        report.selected = {rec.call_id: why for rec, why in selection.selected[:limit]}
        reprocess = reprocess or mode != "pending"
    else:
        recs = [recording_from_dict(r) for r in recordings]
        if not reprocess:
            recs = _filter_committed(settings, client, recs, report)
    if limit is not None:
        recs = recs[:limit]
    if progress is not None:
        progress.start(len(recs))
    if not recs:
        report.seconds = time.monotonic() - started
        return report

    ray_cluster.ensure(settings.ray)
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
            in_flight[task.remote(rec, settings_ref, analyze_fn, clip, reprocess)] = rec

    for _ in range(max_in_flight):
        submit_next()
    done = 0
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in ready:
            rec = in_flight.pop(ref)
            done += 1
            try:
                line = _record(report, rec, ray.get(ref))
            except ray.exceptions.RayError as exc:
                line = _failed(client, settings, report, rec, _error_text(getattr(exc, "cause", None) or exc))
            log.info("[%d/%d] %s %s", done, len(recs), rec.call_id, line)
            if progress is not None:
                progress.done(rec.call_id, _outcome_kind(report, rec.call_id))
            submit_next()
    report.seconds = time.monotonic() - started
    log.info(
        "batch: %d ok, %d quarantined, %d failed, %d busy in %.1fs",
        len(report.ok), len(report.quarantined), len(report.failed), len(report.busy), report.seconds,
    )
    return report
