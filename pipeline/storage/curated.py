"""The curated store: where a call's tables and manifest live, and how they are read.

The curated root is a string: ``s3://bucket/prefix/`` or a local directory. ``CuratedStore``
gives both the same small interface (list, read, write under the root). The manifest of a call
is its commit: jobs read committed calls through this module only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

from pipeline.manifest import CallManifest
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.layout import MANIFESTS, manifest_key, parse_manifest_key


def curated_root(settings: Settings) -> str:
    """The configured curated root as an ``s3://bucket/prefix/`` URI."""
    return normalise_root(f"s3://{settings.s3.curated_bucket}/{settings.s3.curated_prefix}")


def normalise_root(root: str | os.PathLike) -> str:
    """A root that ends with "/", so ``root + relative_key`` is a valid URI or path."""
    root = str(root)
    if not root.startswith("s3://"):
        root = str(Path(root).resolve())
    return root if root.endswith("/") else root + "/"


class CuratedStore:
    """List, read and write objects under a curated root (``s3://bucket/prefix/`` or a directory).

    Keys are relative to the root and use "/" (the layout of pipeline/storage/layout.py without the
    prefix). S3 goes through pipeline.storage.object_store (same boto3 code for AWS and a local endpoint).
    """

    def __init__(self, settings: Settings, root: str | os.PathLike | None = None):
        self.settings = settings
        self.root = normalise_root(root if root is not None else curated_root(settings))

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    @cached_property
    def _bucket_prefix(self) -> tuple[str, str]:
        return object_store.parse_s3_uri(self.root)

    @cached_property
    def _client(self):
        return object_store.s3_client(self.settings.s3)

    def uri(self, key: str) -> str:
        return self.root + key

    def list(self, folder: str = "") -> Iterator[str]:
        """Relative keys under ``folder`` ("" or ending with "/"), in key order."""
        if self.is_s3:
            bucket, root_prefix = self._bucket_prefix
            for obj in object_store.list_objects(self._client, bucket, root_prefix + folder):
                yield obj.key[len(root_prefix):]
            return
        base = Path(self.root)
        start = base / folder
        if start.is_dir():
            yield from sorted(p.relative_to(base).as_posix() for p in start.rglob("*") if p.is_file())

    def read_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        if self.is_s3:
            bucket, root_prefix = self._bucket_prefix
            try:
                return object_store.get_bytes(self._client, bucket, root_prefix + key)
            except self._client.exceptions.NoSuchKey:
                return None
        path = Path(self.root) / key
        return path.read_bytes() if path.is_file() else None

    def write_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Replace the object whole: readers see the old or the new bytes, never a mix."""
        if self.is_s3:
            bucket, root_prefix = self._bucket_prefix
            object_store.put_bytes(self._client, bucket, root_prefix + key, data, content_type)
            return
        path = Path(self.root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def manifests(self) -> list[tuple[str, CallManifest]]:
        """Every committed call's (manifest key, manifest), in key order."""
        keys = [k for k in self.list(MANIFESTS + "/") if parse_manifest_key(k, "")]
        # One GET per call: in parallel, since S3 latency dominates (boto3 clients are thread-safe).
        with ThreadPoolExecutor(max_workers=16 if self.is_s3 else 1) as pool:
            blobs = list(pool.map(self.read_bytes, keys))
        out = []
        for key, blob in zip(keys, blobs):
            if blob is None:  # deleted between list and read
                continue
            manifest = CallManifest.from_json(blob)
            manifest.call_date = manifest.call_date or parse_manifest_key(key, "")[0]
            out.append((key, manifest))
        return out

    def table_keys(self, table: str) -> Iterator[str]:
        """Parquet keys of a table, laid out as pipeline.storage.layout.table_key."""
        for key in self.list(f"{table}/"):
            parts = key.split("/")
            if len(parts) == 4 and parts[1].startswith("date=") and parts[2].startswith("call_id=") and key.endswith(".parquet"):
                yield key



# --- committed calls on S3 ------------------------------------------------------------------


def manifest_prefix(settings: Settings) -> str:
    return f"{settings.s3.curated_prefix}{MANIFESTS}/"


def committed_calls(settings: Settings, client) -> set[tuple[str, str]]:
    """(call_date, call_id) of every committed call."""
    s3 = settings.s3
    found = set()
    for obj in object_store.list_objects(client, s3.curated_bucket, manifest_prefix(settings)):
        parsed = parse_manifest_key(obj.key, s3.curated_prefix)
        if parsed:
            found.add(parsed)
    return found


def read_manifest(settings: Settings, call_date: str, call_id: str, client=None) -> CallManifest | None:
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    found = object_store.get_bytes_and_etag(client, s3.curated_bucket, manifest_key(s3.curated_prefix, call_date, call_id))
    return CallManifest.from_json(found[0]) if found else None


def list_manifests(settings: Settings, client=None) -> list[CallManifest]:
    """Every committed call's manifest, sorted by date then call id."""
    client = client or object_store.s3_client(settings.s3)
    return [read_manifest(settings, d, c, client) for d, c in sorted(committed_calls(settings, client))]
