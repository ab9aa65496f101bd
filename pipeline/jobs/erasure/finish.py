"""The marts, afterwards: one rebuild (a new DuckDB file) for every request erased from the
buckets, checked free of their calls; the deleted trend reports rebuilt; the records completed."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.clock import utc_now
from pipeline.jobs.erasure.digests import Digester, digester
from pipeline.jobs.erasure.erase import read_record
from pipeline.settings import Settings
from pipeline.storage import leases, object_store
from pipeline.storage.keys import erasure_awaiting_marts_folder, erasure_awaiting_marts_key, erasure_record_key

log = logging.getLogger(__name__)


class ErasureError(RuntimeError):
    """The erasure could not be confirmed (e.g. the rebuilt marts still hold an erased call)."""


def scrub_marts_leftovers(marts_path: str | os.PathLike) -> list[str]:
    """Remove what an older marts file may have left beside the new one: a WAL (the new file is
    checkpointed, so a WAL here belongs to the old one) and half builds of processes that are
    gone. Returns the names removed."""
    target = Path(marts_path)
    removed = []
    wal = target.with_name(target.name + ".wal")
    if wal.exists():
        wal.unlink()
        removed.append(wal.name)
    for stale in target.parent.glob(f"{target.name}.building-*"):
        pid = stale.name.rsplit("-", 1)[-1].split(".", 1)[0]
        if pid.isdigit() and leases.process_alive(int(pid)):
            continue  # a build in progress
        stale.unlink(missing_ok=True)
        removed.append(stale.name)
    return removed


def marts_call_digests(marts_path: str | os.PathLike, digest: Digester) -> set[str]:
    """Digests of every call id in any table of the marts file."""
    import duckdb

    found: set[str] = set()
    with duckdb.connect(str(marts_path), read_only=True) as con:
        tables = con.execute(
            "select table_name from duckdb_columns() where column_name = 'call_id' and schema_name = 'main' "
            "and table_name in (select table_name from duckdb_tables())"
        ).fetchall()
        for (table,) in tables:
            rows = con.execute(f'select distinct call_id::varchar from "{table}" where call_id is not null').fetchall()
            found |= {digest.call(row[0]) for row in rows}
    return found


def awaiting_marts(settings: Settings, client=None) -> list[str]:
    """Request ids erased from the buckets whose marts have not been rebuilt yet."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    folder = erasure_awaiting_marts_folder(s3.ops_prefix)
    return sorted(o.key[len(folder):] for o in object_store.list_objects(client, s3.curated_bucket, folder))


def finish_pending(settings: Settings, *, build_marts: Callable[[Settings], Any],
                   build_report: Callable[..., Any] | None = None, client=None) -> dict:
    """Rebuild the marts (``build_marts(settings)``, returning an object with ``path``) once for
    every request erased from the buckets but not from the marts yet; check the new file holds
    none of their calls; rebuild the trend reports the erasure deleted
    (``build_report(settings, day=, marts_path=)``); then complete each record."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    pending = awaiting_marts(settings, client)
    if not pending:
        return {"requests": [], "marts": None}
    digest = digester(settings)
    records = {rid: read_record(settings, rid, client) for rid in pending}
    for rid, record in records.items():
        if record is not None and record.get("digest_key_id") != digest.key_id:
            raise ErasureError(f"erasure record {rid} was made with another digest key: use the same "
                               "erasure.digest_key_path on every host")
    marts = build_marts(settings)
    path = Path(marts.path if hasattr(marts, "path") else marts["path"])
    leftovers = scrub_marts_leftovers(path)
    still = marts_call_digests(path, digest)
    for rid, record in records.items():
        if record is not None and still & set(record["calls"]):
            raise ErasureError(f"the rebuilt marts still hold a call of erasure {rid}: was it committed again?")
    days = sorted({d for r in records.values() if r for d in r.get("report_days", [])})
    if build_report is not None:
        for day in days:
            build_report(settings, day=day, marts_path=str(path))
    now = utc_now()
    for rid, record in records.items():
        if record is not None:
            record.pop("reuploads", None)
            record["marts"] = {"rebuilt_at": now.isoformat(), "verified": True, "path": path.name,
                               "leftovers_removed": leftovers}
            record["reports_rebuilt"] = record.get("report_days", []) if build_report is not None else []
            record["completed_at"] = now.isoformat()
            record["latency_s"] = round((now - datetime.fromisoformat(record["requested_at"])).total_seconds(), 3)
            record["within_deadline"] = now <= datetime.fromisoformat(record["deadline"])
            object_store.put_bytes(client, s3.curated_bucket, erasure_record_key(s3.ops_prefix, rid),
                                   json.dumps(record, indent=2, sort_keys=True).encode(), "application/json")
        object_store.purge_key(client, s3.curated_bucket, erasure_awaiting_marts_key(s3.ops_prefix, rid))
    log.info("marts rebuilt for %d erasure request(s); %d trend report(s) rebuilt", len(pending), len(days))
    return {"requests": pending, "marts": str(path), "leftovers_removed": leftovers, "reports_rebuilt": days}
