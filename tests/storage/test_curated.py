import pyarrow.parquet as pq

from factories import make_call_tables
from pipeline.manifest import CallManifest
from pipeline.settings import Settings
from pipeline.storage.curated import CuratedStore, manifest_key, parse_manifest_key, table_key


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
    assert list(store.list()) == [manifest_key("", "2026-11-20", "c1")]
    [(_, manifest)] = store.manifests()
    assert (manifest.status, manifest.reason, manifest.table_keys) == ("quarantined", "unusable", {})
    assert store.read_manifest("2026-11-21", "c1") is None
