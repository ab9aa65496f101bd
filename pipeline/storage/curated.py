"""The curated store: where a call's tables and manifest live, and the one module that writes and
reads them (Parquet, manifests, the commit).

A curated root is a string: ``s3://bucket/prefix/`` or a local directory. Under it:

    <table>/date=<YYYY-MM-DD>/call_id=<call_id>/part-0.parquet
    snippets/date=<YYYY-MM-DD>/call_id=<call_id>/<flag_id>.ogg      a flag's review audio
    _manifests/date=<YYYY-MM-DD>/call_id=<call_id>/_manifest.json
    _manifests/date=<YYYY-MM-DD>/call_id=<call_id>/history/<created_at>-<commit_id>.json   earlier commits

Partition keys are Hive style, so DuckDB's read_parquet(..., hive_partitioning=true) sees them.
Keys are deterministic, so re-running a call overwrites and never duplicates. A call's manifest
is written after all of its tables and snippets: its presence is the commit, and jobs read
committed calls through ``CuratedStore`` only.

Reprocessing a committed call replaces its outputs as one unit. Each commit has a ``commit_id``,
written into the manifest and into the footer (key-value metadata ``COMMIT_ID_KEY``) of every
Parquet file of the commit; the marts load a call only while every one of its files carries its
manifest's commit id (pipeline.jobs.marts), so a build that runs while a reprocessing has
overwritten some files but not yet written the manifest leaves the call out instead of mixing
two runs' rows. The previous manifest is copied to the call's ``history/`` before the first
table is overwritten; it lies in the call's manifest folder (``call_folder``), which erasure
deletes whole.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.clock import utc_now
from pipeline.manifest import CallManifest
from pipeline.schemas import TABLES
from pipeline.settings import Settings
from pipeline.storage import object_store

MANIFESTS = "_manifests"
HISTORY = "history"
# Parquet footer key naming the commit a table file belongs to (CallManifest.commit_id).
COMMIT_ID_KEY = "callaffect.commit_id"
SNIPPETS = "snippets"
PARQUET_COMPRESSION = "zstd"
# Flag ids become object names: one path segment, never "." or "..".
_FLAG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,255}$")


def table_key(curated_prefix: str, table: str, call_date: str, call_id: str) -> str:
    return f"{curated_prefix}{table}/date={call_date}/call_id={call_id}/part-0.parquet"


def manifest_key(curated_prefix: str, call_date: str, call_id: str) -> str:
    return f"{curated_prefix}{MANIFESTS}/date={call_date}/call_id={call_id}/_manifest.json"


def history_key(curated_prefix: str, call_date: str, call_id: str, created_at: str | None, commit_id: str | None) -> str:
    """Where a replaced manifest is kept: in the call's manifest folder, named by when it was
    committed (sortable) and its commit id (unique even for two commits in one microsecond)."""
    stamp = re.sub(r"[^0-9A-Za-z]", "", created_at or "") or "unknown"
    folder = call_folder(curated_prefix, MANIFESTS, call_date, call_id)
    return f"{folder}{HISTORY}/{stamp}-{commit_id or 'none'}.json"


def call_folder(curated_prefix: str, folder: str, call_date: str, call_id: str) -> str:
    """One call's partition of a top-level folder (a table, snippets, manifests), ending with "/":
    everything of the call in that folder lies under it (erasure lists it)."""
    return f"{curated_prefix}{folder}/date={call_date}/call_id={call_id}/"


def snippets_folder(curated_prefix: str, call_date: str, call_id: str) -> str:
    """The folder of one call's review snippets, ending with "/"."""
    return f"{curated_prefix}{SNIPPETS}/date={call_date}/call_id={call_id}/"


def snippet_key(curated_prefix: str, call_date: str, call_id: str, flag_id: str) -> str:
    if not _FLAG_ID.match(flag_id):
        raise ValueError(f"flag id {flag_id!r} cannot name a snippet")
    return f"{snippets_folder(curated_prefix, call_date, call_id)}{flag_id}.ogg"


def parse_snippet_key(key: str, curated_prefix: str) -> tuple[str, str, str] | None:
    """snippet key -> (call_date, call_id, flag_id)."""
    m = re.match(
        re.escape(curated_prefix) + SNIPPETS + r"/date=(\d{4}-\d{2}-\d{2})/call_id=([^/]+)/([^/]+)\.ogg$", key
    )
    return (m.group(1), m.group(2), m.group(3)) if m else None


def parse_manifest_key(key: str, curated_prefix: str) -> tuple[str, str] | None:
    """manifest key -> (call_date, call_id)."""
    m = re.match(
        re.escape(curated_prefix) + MANIFESTS + r"/date=(\d{4}-\d{2}-\d{2})/call_id=([^/]+)/_manifest\.json$", key
    )
    return (m.group(1), m.group(2)) if m else None


def parquet_bytes(table: pa.Table, commit_id: str | None = None) -> bytes:
    """The table as a Parquet file: every Parquet file the pipeline writes is made here. With
    ``commit_id`` its footer names the commit; a rewrite of a read table (retention) keeps the
    commit id the table's schema metadata carries."""
    if commit_id is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), COMMIT_ID_KEY: commit_id})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION)
    return sink.getvalue().to_pybytes()


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

    Keys are relative to the root and use "/" (the layout above, with an empty prefix). S3 goes
    through pipeline.storage.object_store (same boto3 code for AWS and a local endpoint), with
    ``client`` when given, else one made from the settings on first use.
    """

    def __init__(self, settings: Settings, root: str | os.PathLike | None = None, client=None):
        self.settings = settings
        self.root = normalise_root(root if root is not None else curated_root(settings))
        self._given_client = client

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    @cached_property
    def _bucket_prefix(self) -> tuple[str, str]:
        return object_store.parse_s3_uri(self.root)

    @cached_property
    def _client(self):
        return self._given_client or object_store.s3_client(self.settings.s3)

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
            found = object_store.get_bytes_and_etag(self._client, bucket, root_prefix + key)
            return found[0] if found else None
        path = Path(self.root) / key
        return path.read_bytes() if path.is_file() else None

    def write_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Replace the object whole: readers see the old or the new bytes, never a mix."""
        if self.is_s3:
            bucket, root_prefix = self._bucket_prefix
            object_store.put_bytes(self._client, bucket, root_prefix + key, data, content_type)
            return
        path = Path(self.root) / key
        tmp = _temporary_copy(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write the object only if it does not exist yet (False when it does): of two writers
        racing for one key, exactly one wins (S3's If-None-Match; a hard link on a directory)."""
        if self.is_s3:
            bucket, root_prefix = self._bucket_prefix
            return object_store.put_conditional(self._client, bucket, root_prefix + key, data) is not None
        path = Path(self.root) / key
        tmp = _temporary_copy(path, data)
        try:
            os.link(tmp, path)  # atomic, and fails when the name exists
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def delete(self, key: str) -> None:
        """Remove the object; one that does not exist is fine."""
        if self.is_s3:
            bucket, root_prefix = self._bucket_prefix
            object_store.delete_object(self._client, bucket, root_prefix + key)
            return
        (Path(self.root) / key).unlink(missing_ok=True)

    def stored_key(self, key: str) -> str:
        """``key`` as the bucket names it (with the root's prefix); a directory root keeps it relative."""
        return self._bucket_prefix[1] + key if self.is_s3 else key

    # --- manifests: the commits ---------------------------------------------------------------

    def committed_calls(self) -> set[tuple[str, str]]:
        """(call_date, call_id) of every committed call, from the manifest keys alone."""
        return {found for found in (parse_manifest_key(k, "") for k in self.list(MANIFESTS + "/")) if found}

    def read_manifest(self, call_date: str, call_id: str) -> CallManifest | None:
        """The call's manifest, or None when the call is not committed."""
        key = manifest_key("", call_date, call_id)
        return self._parse_manifest(key, self.read_bytes(key))

    def manifests(self, days: Iterable[str] | None = None) -> list[tuple[str, CallManifest]]:
        """Every committed call's (manifest key, manifest), in key order; with ``days``
        (YYYY-MM-DD), only the calls of those dates (one listing per day)."""
        folders = [MANIFESTS + "/"] if days is None else [f"{MANIFESTS}/date={day}/" for day in sorted(set(days))]
        keys = [k for folder in folders for k in self.list(folder) if parse_manifest_key(k, "")]
        # One GET per call: in parallel, since S3 latency dominates (boto3 clients are thread-safe).
        with ThreadPoolExecutor(max_workers=16 if self.is_s3 else 1) as pool:
            blobs = list(pool.map(self.read_bytes, keys))
        found = ((key, self._parse_manifest(key, blob)) for key, blob in zip(keys, blobs))
        return [(key, manifest) for key, manifest in found if manifest is not None]  # None: deleted meanwhile

    @staticmethod
    def _parse_manifest(key: str, blob: bytes | None) -> CallManifest | None:
        if blob is None:
            return None
        manifest = CallManifest.from_json(blob)
        manifest.call_date = manifest.call_date or parse_manifest_key(key, "")[0]
        return manifest

    def history(self, call_date: str, call_id: str) -> list[CallManifest]:
        """The call's earlier manifests, oldest first (each commit that replaced one kept it)."""
        folder = call_folder("", MANIFESTS, call_date, call_id) + HISTORY + "/"
        found = (self.read_bytes(key) for key in self.list(folder))
        return [CallManifest.from_json(blob) for blob in found if blob is not None]

    def write_manifest(self, manifest: CallManifest) -> None:
        """Write the manifest under its call's key: the call's commit, or a later verdict on it."""
        key = manifest_key("", manifest.call_date, manifest.call_id)
        self.write_bytes(key, manifest.to_json().encode(), "application/json")

    def commit(self, manifest: CallManifest, tables: dict[str, pa.Table],
               snippets: dict[str, bytes] | None = None) -> CallManifest:
        """Write the call's tables and review snippets (flag id -> Ogg/Opus), then its manifest
        (the commit), then drop what older runs left: tables and snippets this run has not.

        ``manifest.call_date`` is the partition the keys use. The manifest records each table's
        rows and key. A new ``commit_id`` names this commit in the manifest and in every table
        file's footer. A manifest this commit replaces is first copied to the call's history
        (so it survives a commit that dies half-way). Returns the manifest as committed.
        """
        day, call_id = manifest.call_date, manifest.call_id
        manifest.created_at = manifest.created_at or utc_now().isoformat()
        manifest.commit_id = uuid.uuid4().hex
        previous = self.read_bytes(manifest_key("", day, call_id))
        if previous is not None:
            old = CallManifest.from_json(previous)
            self.write_bytes(history_key("", day, call_id, old.created_at, old.commit_id), previous, "application/json")
        manifest.table_keys, manifest.tables = {}, {}
        for name, table in tables.items():
            key = table_key("", name, day, call_id)
            self.write_bytes(key, parquet_bytes(table, manifest.commit_id))
            manifest.table_keys[name] = self.stored_key(key)
            manifest.tables[name] = table.num_rows
        audio_by_key = {snippet_key("", day, call_id, flag_id): audio for flag_id, audio in (snippets or {}).items()}
        for key, audio in audio_by_key.items():
            self.write_bytes(key, audio, "audio/ogg")
        self.write_manifest(manifest)
        # A re-run that produced fewer tables or flags (or a quarantine) must not leave an older
        # run's rows, nor audio of a flag that no longer exists.
        for name in TABLES.keys() - tables.keys():
            self.delete(table_key("", name, day, call_id))
        for key in set(self.list(snippets_folder("", day, call_id))) - audio_by_key.keys():
            self.delete(key)
        return manifest

    def table_keys(self, table: str) -> Iterator[str]:
        """Parquet keys of a table, laid out as ``table_key``."""
        for key in self.list(f"{table}/"):
            parts = key.split("/")
            if len(parts) == 4 and parts[1].startswith("date=") and parts[2].startswith("call_id=") and key.endswith(".parquet"):
                yield key


def _temporary_copy(path: Path, data: bytes) -> str:
    """``data`` in a new temporary file beside ``path`` (same file system, so it can be renamed
    or linked into place atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp
