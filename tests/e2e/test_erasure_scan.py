"""Erasure end to end: two generated calls through the real nightly DAG (real models on Ray),
a QA verdict and note on a flag of one, retention's log, the trend report; then an erasure
request dropped in the bucket is worked by the erasure DAG, and every version of every object
of both buckets, and the DuckDB file, is scanned for the call id and words only it said."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from airflow_env import use_settings

from pipeline.devtools.demo import run_dag, task_result
from pipeline.devtools.synth.calls import generate_call
from pipeline.jobs import erasure
from pipeline.jobs.marts import build_marts
from pipeline.jobs.retention import run_retention
from pipeline.jobs.trend_report import build_trend_report, report_key
from pipeline.settings import ErasureSettings, RetentionSettings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore
from pipeline.storage.keys import erasure_requests_folder
from pipeline.storage.reviews import Assignment, Note, ReviewStore, Verdict, ViewEvent

ROOT = Path(__file__).resolve().parents[2]
DAY = date.today().isoformat()  # inside the window of today's trend report
ERASED, KEPT = "erasee-q7x", "keeper-m4z"
SUBJECT = "cust-e2e-5150"
_WORD = re.compile(r"[a-z]{5,}")


def _words(texts) -> set[str]:
    return {w for text in texts if text for w in _WORD.findall(text.lower())}


def _project_words() -> set[str]:
    """Words of the text the pipeline itself writes (SQL, the code that writes tables, logs and
    reports): they may sit in any file it makes, so they cannot prove a call's words are gone.
    The generated calls' scripts (pipeline/devtools) are left out: they are the calls' words."""
    files = [*ROOT.glob("sql/**/*.sql"), *ROOT.glob("pipeline/*.py"), *ROOT.glob("pipeline/jobs/*.py"),
             *ROOT.glob("pipeline/call/*.py"), *ROOT.glob("pipeline/stages/**/*.py"), *ROOT.glob("pipeline/storage/*.py")]
    return _words(p.read_text(errors="replace") for p in files)


def _utterance_texts(store: CuratedStore, call_id: str) -> list[str]:
    [manifest] = [m for _, m in store.manifests() if m.call_id == call_id]
    key = manifest.table_keys["utterances"][len(store.settings.s3.curated_prefix):]
    return pq.read_table(io.BytesIO(store.read_bytes(key))).column("text").to_pylist()


def _bucket_texts(settings) -> list[tuple[str, str]]:
    """(where, lower-case text) for every version of every object of both buckets: its key, its
    bytes, and for Parquet its values (compressed pages would hide words from a byte scan)."""
    client, found = object_store.s3_client(settings.s3), []
    for bucket in (settings.s3.raw_bucket, settings.s3.curated_bucket):
        for v in object_store.list_versions(client, bucket):
            where = f"{bucket}/{v.key}@{v.version_id}"
            found.append((where, v.key.lower()))
            if v.is_delete_marker:
                continue
            blob = object_store.get_version_bytes(client, bucket, v.key, v.version_id)
            found.append((where, blob.decode("latin-1").lower()))
            if blob[:4] == b"PAR1":
                found.append((where, json.dumps(pq.read_table(io.BytesIO(blob)).to_pylist(), default=str).lower()))
    return found


def _marts_texts(path: Path) -> list[tuple[str, str]]:
    """The DuckDB file's bytes, and every value of every table (DuckDB compresses strings)."""
    found = [(path.name, path.read_bytes().decode("latin-1").lower())]
    with duckdb.connect(str(path), read_only=True) as con:
        for (table,) in con.execute("select table_name from duckdb_tables()").fetchall():
            rows = con.execute(f'select columns(*)::varchar from "{table}"').fetchall()  # as text: no tz module
            found.append((f"{path.name}:{table}", json.dumps(rows, default=str).lower()))
    return found


def _hits(texts: list[tuple[str, str]], needles: list[str]) -> dict[str, list[str]]:
    return {n: sorted({where for where, text in texts if n.lower() in text}) for n in needles}


def _rows_per_call(path: Path, call_id: str) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("select table_name from duckdb_columns() where column_name = 'call_id' "
                             "and table_name in (select table_name from duckdb_tables())").fetchall()
        return {t: con.execute(f'select count(*) from "{t}" where call_id = ?', [call_id]).fetchone()[0] for (t,) in tables}


def test_an_erased_call_leaves_no_trace_in_any_object_version_or_the_marts(settings, ray_local, airflow_home,
                                                                           monkeypatch, tmp_path):
    settings = use_settings(monkeypatch, dataclasses.replace(
        settings, erasure=ErasureSettings(digest_key_path=str(tmp_path / "erasure-key"))))
    s3, client = settings.s3, object_store.s3_client(settings.s3)
    for bucket in (s3.raw_bucket, s3.curated_bucket):  # as infra/terraform makes them
        client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for seed, call_id in enumerate((ERASED, KEPT)):  # two different scripts
        call = generate_call(tmp_path / "raw", call_id, seed=seed, n_speakers=2, frustrated=True, truth_dir=tmp_path / "truth")
        metadata = {**json.loads(call.metadata_path.read_text()), "agent_id": "agent-7",
                    **({"subject_id": SUBJECT} if call_id == ERASED else {})}
        call.metadata_path.write_text(json.dumps(metadata))
        for path in (call.audio_path, call.metadata_path):
            object_store.upload_file(client, path, s3.raw_bucket, f"{s3.raw_prefix}{DAY}/{path.name}")

    night = run_dag("callaffect_nightly")

    assert night.state == "success", task_result(night, "report")
    store = CuratedStore(settings)
    assert any(f["call_id"] == ERASED for f in task_result(night, "report")["flags"]), "the review record needs a flag"
    # The words only the erased call said (none of the kept call's, none of the project's text).
    erased_words, kept_words = _words(_utterance_texts(store, ERASED)), _words(_utterance_texts(store, KEPT))
    words = sorted(erased_words - kept_words - _project_words(), key=lambda w: (-len(w), w))[:5]
    assert len(words) >= 3, words
    with duckdb.connect(settings.marts.duckdb_path, read_only=True) as con:
        flag_id, rule, quote = con.execute(
            "select flag_id, rule_version, speaker_text from mart_qa_flags where call_id = ? order by score_rank limit 1",
            [ERASED]).fetchone()
    reviews = ReviewStore(settings)
    reviews.add_verdict(Verdict.new(flag_id, ERASED, DAY, rule, "rita", "confirmed", f"she said: {' '.join(words)}"))
    reviews.add_note(Note.new(ERASED, DAY, 0, "rita", f"customer: {quote}"))
    reviews.add_assignment(Assignment.new(flag_id, ERASED, "rita", "lena"))
    reviews.log_view(ViewEvent.new("rita", ERASED))
    # Retention takes both calls' raw media (its log names them), leaving versions behind.
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)  # ages count in whole days of the call date
    retention = run_retention(dataclasses.replace(settings, retention=RetentionSettings(raw_max_age_days=0)), now=tomorrow)
    assert retention.log_key is not None
    marts_path = Path(build_marts(settings).path)  # the verdict's comment into the marts too
    build_trend_report(settings, marts_path=marts_path)
    kept_rows = _rows_per_call(marts_path, KEPT)
    needles = [ERASED, SUBJECT, *words]
    # The scan's control: before erasure it finds every needle, in the buckets and the marts.
    before_buckets, before_marts = _hits(_bucket_texts(settings), needles), _hits(_marts_texts(marts_path), needles)
    assert all(before_buckets[n] for n in needles), before_buckets
    assert all(before_marts[n] for n in [ERASED, *words]), before_marts
    assert any(f"{s3.raw_bucket}/" in w for w in before_buckets[ERASED])  # raw versions retention left

    request = {"request_id": "dsr-2024-0042", "call_id": ERASED, "requested_by": "dpo@operator"}
    object_store.put_bytes(client, s3.curated_bucket, erasure_requests_folder(s3.ops_prefix) + "dsr-2024-0042.json",
                           json.dumps(request).encode())

    run = run_dag("callaffect_erasure")

    assert run.state == "success"
    assert list(task_result(run, "erase")["done"]) == ["dsr-2024-0042"]
    assert _hits(_bucket_texts(settings), needles) == {n: [] for n in needles}
    assert _hits(_marts_texts(marts_path), needles) == {n: [] for n in needles}
    assert sorted(p.name for p in marts_path.parent.iterdir()) == [marts_path.name]  # no WAL, no half build
    assert _rows_per_call(marts_path, KEPT) == kept_rows and kept_rows["dim_calls"] == 1
    assert store.read_bytes(report_key(DAY)).startswith(b"<!doctype html>")  # rebuilt without the call
    record = erasure.read_record(settings, "dsr-2024-0042")
    assert record["calls"] == [erasure.call_digest(settings, ERASED)] and record["marts"]["verified"] is True
    assert record["reports_rebuilt"] == [DAY] and record["removed"]["reviews.verdicts"] == 1
    assert record["log_lines_removed"] >= 1  # retention's log named its media
