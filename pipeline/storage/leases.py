"""Call leases: at most one process analyses a call at a time, across batches and hosts.

A lease is a small JSON object under ``<ops_prefix>leases/`` in the curated bucket, created
with ``If-None-Match: *`` (S3's conditional write): of two batches that reach the same call,
exactly one creates it; the other skips the call. The holder deletes it (``If-Match`` its ETag)
once the call is committed. A lease is abandoned when it is older than ``ray.call_lease_s``, or
when it was taken on this host by a process that no longer exists (a killed batch); it is then
taken over with ``If-Match`` on the old ETag, so two takers cannot both win.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.clock import utc_now
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.keys import RawRecording, lease_key


@dataclass(frozen=True)
class Lease:
    key: str
    etag: str
    owner: str


@dataclass(frozen=True)
class Busy:
    """The call is leased by someone else: who, and until when."""

    holder: str
    expires_at: str

    def __str__(self) -> str:
        return f"being analysed by {self.holder} (lease until {self.expires_at})"


def _body(owner: str, ttl_s: float) -> bytes:
    now = utc_now()
    return json.dumps({
        "owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "taken_at": now.isoformat(),
        "expires_at": (now + timedelta(seconds=ttl_s)).isoformat(),
    }).encode()


def _abandoned(holder: dict) -> bool:
    try:
        expired = datetime.fromisoformat(holder["expires_at"]) <= utc_now()
    except (KeyError, TypeError, ValueError):
        return True  # unreadable: nobody can be relying on it
    if expired:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    return not process_alive(pid)  # its process is gone: a killed batch or worker


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(client, settings: Settings, rec: RawRecording) -> Lease | Busy:
    """Take the call's lease, or say who holds it."""
    bucket, ttl = settings.s3.curated_bucket, settings.ray.call_lease_s
    key = lease_key(settings.s3.ops_prefix, rec.call_date, rec.call_id)
    owner = uuid.uuid4().hex
    for _ in range(3):  # create, or take over an abandoned lease; each step can lose a race
        etag = object_store.put_conditional(client, bucket, key, _body(owner, ttl))
        if etag is not None:
            return Lease(key, etag, owner)
        current = object_store.get_bytes_and_etag(client, bucket, key)
        if current is None:
            continue  # released between our write and our read: try to create it again
        data, old_etag = current
        try:
            holder = json.loads(data)
        except ValueError:
            holder = {}
        if holder.get("owner") == owner:
            return Lease(key, old_etag, owner)  # our own write, whose answer was lost and retried
        if not _abandoned(holder):
            return Busy(f"{holder.get('host', '?')}:{holder.get('pid', '?')}", str(holder.get("expires_at", "?")))
        etag = object_store.put_conditional(client, bucket, key, _body(owner, ttl), if_etag=old_etag)
        if etag is not None:
            return Lease(key, etag, owner)
    return Busy("another batch", "unknown")


def release(client, settings: Settings, lease: Lease) -> None:
    """Give the lease back; a lease someone took over in the meantime is left alone."""
    object_store.delete_if_match(client, settings.s3.curated_bucket, lease.key, lease.etag)
