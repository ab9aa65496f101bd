import dataclasses

import pyarrow.parquet as pq
import pytest

from factories import make_call_tables
from pipeline.manifest import CallManifest
from pipeline.settings import S3Settings, Settings
from pipeline.storage import object_store
from pipeline.storage.curated import (
    CuratedStore, history_key, manifest_key, parse_manifest_key, parse_snippet_key, snippet_key, table_key,
)


def test_curated_keys_are_hive_partitioned_and_round_trip():
    assert table_key("", "utterances", "2026-11-20", "c1") == "utterances/date=2026-11-20/call_id=c1/part-0.parquet"
    key = manifest_key("curated/", "2026-11-20", "c1")
    assert parse_manifest_key(key, "curated/") == ("2026-11-20", "c1")
    assert parse_manifest_key("curated/_manifests/date=2026-11-20/call_id=c1/other.json", "curated/") is None


def test_commit_writes_tables_then_the_manifest_and_a_rerun_drops_stale_tables(tmp_path):
    store = CuratedStore(Settings(), tmp_path)
    tables = make_call_tables("c1", "2026-11-20")
    committed = store.commit(CallManifest("c1", call_date="2026-11-20"), tables)

    assert store.committed_calls() == {("2026-11-20", "c1")}
    assert store.read_manifest("2026-11-20", "c1") == committed and committed.created_at
    assert committed.tables == {name: t.num_rows for name, t in tables.items()}
    parquet = pq.ParquetFile(tmp_path / committed.table_keys["utterances"])
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"

    store.commit(CallManifest("c1", call_date="2026-11-20").quarantine("unusable"), {})
    # The replaced manifest is kept in the call's history (pipeline.storage.curated.history_key).
    assert list(store.list()) == [
        manifest_key("", "2026-11-20", "c1"), history_key("", "2026-11-20", "c1", committed.created_at, committed.commit_id),
    ]
    [(_, manifest)] = store.manifests()
    assert (manifest.status, manifest.reason, manifest.table_keys) == ("quarantined", "unusable", {})
    assert store.read_manifest("2026-11-21", "c1") is None


def test_snippet_keys_are_one_object_per_flag_under_the_call_and_round_trip():
    key = snippet_key("curated/", "2026-11-20", "c1", "c1:SPEAKER_01:12.5")
    assert key == "curated/snippets/date=2026-11-20/call_id=c1/c1:SPEAKER_01:12.5.ogg"
    assert parse_snippet_key(key, "curated/") == ("2026-11-20", "c1", "c1:SPEAKER_01:12.5")
    assert parse_snippet_key("curated/snippets/date=2026-11-20/call_id=c1/x.wav", "curated/") is None
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="cannot name a snippet"):
            snippet_key("", "2026-11-20", "c1", bad)


def test_commit_writes_snippets_before_the_manifest_and_a_rerun_drops_those_of_gone_flags(settings):
    """On moto's S3 server, under a curated prefix: what a batch commit does."""
    settings = dataclasses.replace(settings, s3=S3Settings(**{**dataclasses.asdict(settings.s3), "curated_prefix": "cur/"}))
    store = CuratedStore(settings)
    written, real_write = [], store.write_bytes

    def recording_write(key, data, content_type="application/octet-stream"):
        written.append(key)
        real_write(key, data, content_type)

    store.write_bytes = recording_write
    tables = make_call_tables("c1", "2026-11-20")
    first = {"c1-f0": b"OggS first", "c1-f1": b"OggS second"}
    store.commit(CallManifest("c1", call_date="2026-11-20"), tables, first)

    snippet_keys = [snippet_key("", "2026-11-20", "c1", f) for f in first]
    assert written[-1] == manifest_key("", "2026-11-20", "c1")  # the commit comes last
    assert set(snippet_keys) < set(written[:-1])
    client = object_store.s3_client(settings.s3)
    stored = {k: object_store.get_bytes(client, settings.s3.curated_bucket, "cur/" + k) for k in snippet_keys}
    assert list(stored.values()) == [b"OggS first", b"OggS second"]

    # A re-run whose analysis no longer flags c1-f1: its audio goes, the kept flag's is replaced.
    store.commit(CallManifest("c1", call_date="2026-11-20"), tables, {"c1-f0": b"OggS again"})
    assert list(store.list("snippets/")) == [snippet_keys[0]]
    assert store.read_bytes(snippet_keys[0]) == b"OggS again"
    store.commit(CallManifest("c1", call_date="2026-11-20").quarantine("unusable"), {})
    assert list(store.list("snippets/")) == []
    # Replaced manifests are kept in the call's history (pipeline.storage.curated.history_key).
    assert list(store.list()) == [manifest_key("", "2026-11-20", "c1")] + sorted(store.list("_manifests/date=2026-11-20/call_id=c1/history/"))
    assert len(store.history("2026-11-20", "c1")) == 2
