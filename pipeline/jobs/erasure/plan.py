"""What goes: a request's calls (by manifests and raw sidecars, every version), and the plan of
every object version, log line and trend report that names them."""

from __future__ import annotations

import json
import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from pipeline.jobs.erasure.digests import Names
from pipeline.jobs.erasure.requests import ErasureRequest
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.curated import MANIFESTS, CuratedStore, call_folder, parse_manifest_key
from pipeline.storage.keys import erasure_folder, valid_call_id
from pipeline.storage.object_store import ObjectVersion
from pipeline.storage.reviews import REVIEWS, VIEWS_FOLDER, call_review_folders

MAX_SIDECAR_BYTES = 64 * 1024  # pipeline.metadata.MAX_BYTES: a larger sidecar is not metadata
REPORTS = "reports"  # pipeline.jobs.trend_report writes reports/<day>/index.html under the curated root
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _stem(key: str) -> str:
    name = posixpath.basename(key)
    return name.rsplit(".", 1)[0] if "." in name else name


@dataclass
class Rewrite:
    """A log of many calls, to be written again without the erased calls' lines."""

    key: str
    data: bytes | None  # None: nothing is left, the object goes
    lines_removed: int
    versions: list[ObjectVersion]  # the versions that name an erased call: deleted after the rewrite


@dataclass
class Plan:
    calls: dict[str, set[str]] = field(default_factory=dict)  # call id -> its dates
    raw: list[tuple[ObjectVersion, str]] = field(default_factory=list)  # (version, kind)
    curated: list[tuple[ObjectVersion, str]] = field(default_factory=list)  # keys of the curated bucket
    rewrites: list[Rewrite] = field(default_factory=list)
    report_days: set[str] = field(default_factory=set)
    sha256: set[str] = field(default_factory=set)  # of the manifests; raw media is hashed when erased


def _versions(client, bucket: str, prefix: str) -> list[ObjectVersion]:
    return list(object_store.list_versions(client, bucket, prefix))


def _folders(client, bucket: str, prefix: str) -> list[str]:
    """The "folders" right under ``prefix`` (each ending with "/"), also those that hold only
    older versions."""
    paginator = client.get_paginator("list_object_versions")
    found = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return found


def _read_version(client, bucket: str, v: ObjectVersion) -> bytes:
    return object_store.get_version_bytes(client, bucket, v.key, v.version_id)


def _find_calls(settings: Settings, client, request: ErasureRequest, raw_versions: list[ObjectVersion],
                manifests: list, sidecars: list[ObjectVersion]) -> dict[str, set[str]]:
    """call id -> dates, of every call the request covers, from manifests and raw objects.
    ``sidecars`` gets every raw version that names the subject (erased whatever its name)."""
    s3 = settings.s3
    calls: dict[str, set[str]] = defaultdict(set)
    if request.call_id is not None:
        calls[request.call_id]
    else:
        for _, manifest in manifests:
            if manifest.subject_id == request.subject_id:
                calls[manifest.call_id]
        # Every version of every sidecar: a call not processed yet, or whose manifest predates
        # subject ids, is found by its metadata (also a version that retention deleted).
        for v in raw_versions:
            if v.is_delete_marker or not v.key.endswith(".json") or v.size > MAX_SIDECAR_BYTES:
                continue
            try:
                data = json.loads(_read_version(client, s3.raw_bucket, v).decode("utf-8-sig"))
            except (ValueError, RecursionError):
                continue  # not metadata; it cannot name a subject
            if isinstance(data, dict) and data.get("subject_id") == request.subject_id:
                sidecars.append(v)
                if valid_call_id(_stem(v.key)):
                    calls[_stem(v.key)]
    for _, manifest in manifests:
        if manifest.call_id in calls and manifest.call_date:
            calls[manifest.call_id].add(manifest.call_date)
    # Manifests of every version (a call whose current manifest is gone still has its history).
    root_prefix = s3.curated_prefix
    for v in _versions(client, s3.curated_bucket, f"{root_prefix}{MANIFESTS}/"):
        found = parse_manifest_key(v.key, root_prefix)
        if found and found[1] in calls:
            calls[found[1]].add(found[0])
    for v in raw_versions:
        parts = v.key[len(s3.raw_prefix):].split("/") if v.key.startswith(s3.raw_prefix) else []
        if _stem(v.key) in calls and len(parts) == 2 and _DATE.match(parts[0]):
            calls[_stem(v.key)].add(parts[0])
    return dict(calls)


@dataclass
class Found:
    """The request's calls, and what was read to find them."""

    calls: dict[str, set[str]]
    raw_versions: list[ObjectVersion]
    manifests: list
    sidecars: list[ObjectVersion]  # raw versions that name the subject


def find(settings: Settings, client, request: ErasureRequest) -> Found:
    raw_versions = _versions(client, settings.s3.raw_bucket, "")
    manifests = CuratedStore(settings, client=client).manifests()
    sidecars: list[ObjectVersion] = []
    calls = _find_calls(settings, client, request, raw_versions, manifests, sidecars)
    return Found(calls, raw_versions, manifests, sidecars)


def make_plan(settings: Settings, client, request: ErasureRequest, found: Found, report_window_days: int | None,
          own_leases: set[str]) -> Plan:
    s3 = settings.s3
    plan = Plan(calls=found.calls)
    names = Names(plan.calls, request.subject_id)
    plan.sha256 = {m.sha256 for _, m in found.manifests if m.call_id in plan.calls and m.sha256}

    # Raw: every object named after the call, wherever it lies (also ignored extra media), and
    # every sidecar naming the subject.
    sidecars = {(v.key, v.version_id) for v in found.sidecars}
    for v in found.raw_versions:
        if _stem(v.key) in plan.calls or posixpath.basename(v.key) in plan.calls or (v.key, v.version_id) in sidecars:
            plan.raw.append((v, "raw_metadata" if v.key.endswith(".json") else "raw_media"))

    # Curated root: the call's partition of each top-level folder, and its review folders.
    root = s3.curated_prefix
    folders = [f[len(root):].rstrip("/") for f in _folders(client, s3.curated_bucket, root)]
    for call_id, dates in plan.calls.items():
        prefixes = []
        for day in sorted(dates):
            prefixes += [(call_folder(root, f, day, call_id), _kind_of_folder(f)) for f in folders
                         if f not in (REVIEWS, REPORTS) and f"{root}{f}/" != s3.ops_prefix]
            prefixes += [(root + p, "reviews." + p.split("/")[1]) for p in call_review_folders(day, call_id)]
        if not dates:  # no date known: assignments are keyed by call alone
            prefixes += [(root + p, "reviews.assignments") for p in call_review_folders("2000-01-01", call_id)[2:]]
        for prefix, kind in dict(prefixes).items():
            plan.curated += [(v, kind) for v in _versions(client, s3.curated_bucket, prefix)]

    # Review records not keyed by call (view events): by what they say.
    for v in _versions(client, s3.curated_bucket, root + REVIEWS + "/"):
        if "/call_id=" in v.key or v.is_delete_marker:
            continue
        if names.in_text(v.key) or names.in_bytes(_read_version(client, s3.curated_bucket, v)):
            kind = "reviews.views" if v.key.startswith(root + VIEWS_FOLDER) else "reviews.other"
            plan.curated += [(x, kind) for x in _versions(client, s3.curated_bucket, v.key) if x.key == v.key]

    _plan_ops(settings, client, names, own_leases, plan)
    _plan_reports(settings, client, plan, report_window_days)
    # One entry per version, even when two rules found it.
    plan.curated = list({(v.key, v.version_id): (v, kind) for v, kind in plan.curated}.values())
    return plan


def _kind_of_folder(folder: str) -> str:
    return {MANIFESTS: "manifests", "snippets": "snippets"}.get(folder, "tables")


def _plan_ops(settings: Settings, client, names: Names, own_leases: set[str], plan: Plan) -> None:
    """Ops records naming an erased call: removed, or (logs of many calls) rewritten without it."""
    s3 = settings.s3
    by_key: dict[str, list[ObjectVersion]] = defaultdict(list)
    for v in _versions(client, s3.curated_bucket, s3.ops_prefix):
        if not v.key.startswith(erasure_folder(s3.ops_prefix)) and v.key not in own_leases:
            by_key[v.key].append(v)
    for key, versions in by_key.items():
        kind = "ops." + key[len(s3.ops_prefix):].split("/", 1)[0]
        if names.in_text(key):
            plan.curated += [(v, kind) for v in versions]
            continue
        naming, latest_text = [], None
        for v in versions:
            if v.is_delete_marker:
                continue
            blob = _read_version(client, s3.curated_bucket, v)
            if names.in_bytes(blob):
                naming.append(v)
                if v.is_latest:
                    latest_text = blob
        if not naming:
            continue
        if key.endswith(".jsonl") and latest_text is not None:
            kept = [line for line in latest_text.decode("utf-8", "replace").splitlines(keepends=True)
                    if not names.in_text(line)]
            removed = len(latest_text.decode("utf-8", "replace").splitlines()) - len(kept)
            data = "".join(kept).encode() if any(line.strip() for line in kept) else None
            plan.rewrites.append(Rewrite(key, data, removed, naming))
        else:
            plan.curated += [(v, kind) for v in naming]


def _plan_reports(settings: Settings, client, plan: Plan, window_days: int | None) -> None:
    """Trend reports whose window (the ``window_days`` call dates up to the report's day; None:
    every later report) holds a date of an erased call."""
    dates = [date.fromisoformat(d) for days in plan.calls.values() for d in days]
    if not dates:
        return
    prefix = f"{settings.s3.curated_prefix}{REPORTS}/"
    for v in _versions(client, settings.s3.curated_bucket, prefix):
        day_text = v.key[len(prefix):].split("/", 1)[0]
        if not _DATE.match(day_text):
            continue
        day = date.fromisoformat(day_text)
        if any(d <= day and (window_days is None or day < d + timedelta(days=window_days)) for d in dates):
            plan.curated.append((v, "reports"))
            if v.is_latest and not v.is_delete_marker:
                plan.report_days.add(day_text)
