"""Build the DuckDB marts from the curated Parquet, and swap the new file in atomically.

The SQL lives in ``sql/`` in three layers, applied in this order, each layer's files in name
order (a file may use only what the earlier layers and earlier files made):

- ``staging/``: views over the curated Parquet (``{{ source('<table>') }}``), restricted to
  loadable calls. They stay views, so querying them needs the curated root (the bucket).
- ``facts/``: ``dim_calls`` and ``fct_*`` tables, materialised.
- ``marts/``: ``mart_*`` tables for analysts and the QA app, materialised.

Templating is plain text replacement: ``{{ curated_root }}`` becomes the root (``s3://bucket/
prefix/`` or a local directory, ending with "/"), and ``{{ source('<table>') }}`` becomes a
``read_parquet`` over ``<root><table>/date=*/call_id=*/*.parquet`` (Hive partitions), or an empty
relation of the table's schema when no call has that table yet, so a missing table never breaks
the build.

A call is loadable when its manifest (under ``<root>_manifests/``, the commit) has status ``ok``
and ``quality.passed`` is true. The manifests are read in Python (pipeline.storage.curated.CuratedStore)
into the table ``src_manifests`` before the SQL runs (``{{ file_commits }}`` then lists each table
file's commit id, and ``staging/src_call_commits.sql`` takes out calls whose files and manifest
disagree: see "Reprocessing" below), and the QA verdicts (under ``<root>_reviews/``,
pipeline.storage.reviews.ReviewStore) into ``src_qa_verdicts``: the review record stays in the
bucket, so every build reloads all of it.

Reprocessing. A committed call is rewritten in place: its table files one by one, then its
manifest. Each commit's id is in the manifest and in every file's Parquet footer
(pipeline.storage.curated), so a build between the first file and the manifest sees files whose
commit id is not the manifest's: that call is left out of the whole build (all its tables, with
``reason`` saying so in ``fct_call_status``), never loaded half old, half new. A file rewritten
while the build reads it is caught by reading the commit ids again after the SQL: if any
loadable call's changed, the build starts over (``_BUILD_ATTEMPTS``), else fails, and the old
file stays. Right after its new commit a reprocessed call is not gated yet, so it is out of the
marts until the quality gate passes it: a reprocessed call's rows are all old, all new, or
absent.

The build writes ``<target>.building-<pid>`` next to the target, runs a sanity check, then
``os.replace``s it over the target: analysts with the old file open keep reading the old one,
new connections see the new one, nobody sees half a build. On failure the old file stays.
The built file needs no S3 access except for the staging views.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pyarrow as pa

from pipeline.clock import utc_now
from pipeline.manifest import CallManifest
from pipeline.schemas import TABLES
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.curated import COMMIT_ID_KEY, CuratedStore, parse_manifest_key
from pipeline.storage.reviews import ReviewStore, Verdict

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
LAYERS = ("staging", "facts", "marts")
# Tables a usable build must have; the sanity check fails the build without them.
REQUIRED_TABLES = (
    "dim_calls", "fct_call_status", "mart_qa_flags", "mart_daily_trends", "mart_flag_precision", "mart_call_quarters",
)

MANIFESTS_SCHEMA = pa.schema(
    [
        ("call_id", pa.string()),
        ("call_date", pa.date32()),  # the partition of the manifest's key
        ("status", pa.string()),
        ("reason", pa.string()),
        ("quality_passed", pa.bool_()),  # null: not gated yet
        ("quality_failures", pa.list_(pa.string())),
        ("quality_suite", pa.string()),
        ("quality_checked_at", pa.string()),
        ("loadable", pa.bool_()),
        ("duration_s", pa.float64()),
        ("pipeline_version", pa.string()),
        ("schema_version", pa.string()),
        ("settings_fingerprint", pa.string()),
        ("stage_seconds", pa.string()),  # JSON object: stage -> seconds
        ("created_at", pa.string()),
        ("manifest_key", pa.string()),
        # Audit completeness as the gate measured it (null: gated before the gate measured it).
        ("affect_values", pa.int64()),
        ("affect_values_audited", pa.int64()),
        ("commit_id", pa.string()),  # null: committed before commit ids
    ]
)


VERDICTS_SCHEMA = pa.schema(
    [
        ("verdict_id", pa.string()),
        ("flag_id", pa.string()),
        ("call_id", pa.string()),
        ("call_date", pa.date32()),
        ("rule_version", pa.string()),  # of the flag as the reviewer saw it
        ("reviewer", pa.string()),
        ("verdict", pa.string()),  # confirmed | dismissed | unsure
        ("comment", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("verdict_key", pa.string()),
    ]
)


class MartsBuildError(RuntimeError):
    """The build failed; the previous marts file is untouched."""


@dataclass
class MartsReport:
    path: str
    curated_root: str
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows
    calls_loaded: int = 0
    calls_quarantined: int = 0
    calls_pending_gate: int = 0  # committed ok but not gated yet: not loaded
    # QA verdicts on flags these marts do not hold (call not loaded, or re-run under another rule
    # version): kept in the review store, left out of fct_qa_verdicts.
    verdicts_not_loaded: int = 0
    built_at: str = ""
    seconds: float = 0.0


def _manifests_table(entries: list[tuple[str, CallManifest]]) -> pa.Table:
    """One row per committed call. A call id loadable under two dates (committed before
    discovery rejected such calls) is loaded once, from its earliest date: the other stays out,
    with the reason, rather than breaking every analyst's build."""
    rows = []
    loaded_from: dict[str, str] = {}
    for key, m in entries:
        quality = m.quality or {}
        day = parse_manifest_key(key, "")[0]
        loadable, reason = m.loadable, m.reason
        if loadable and m.call_id in loaded_from:
            loadable, reason = False, f"call id {m.call_id} already loaded from {loaded_from[m.call_id]}"
            log.warning("call %s of %s not loaded: %s", m.call_id, day, reason)
        elif loadable:
            loaded_from[m.call_id] = day
        rows.append(
            {
                "call_id": m.call_id,
                "call_date": date.fromisoformat(day),
                "status": m.status,
                "reason": reason,
                "quality_passed": quality.get("passed"),
                "quality_failures": list(quality.get("failures") or []),
                "quality_suite": quality.get("suite"),
                "quality_checked_at": quality.get("checked_at"),
                "loadable": loadable,
                "duration_s": m.duration_s,
                "pipeline_version": m.pipeline_version,
                "schema_version": m.schema_version,
                "settings_fingerprint": m.settings_fingerprint,
                "stage_seconds": json.dumps(m.stage_seconds, sort_keys=True),
                "created_at": m.created_at,
                "manifest_key": key,
                "affect_values": quality.get("affect_values"),
                "affect_values_audited": quality.get("affect_values_audited"),
                "commit_id": m.commit_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=MANIFESTS_SCHEMA)


def _verdicts_table(verdicts: list[Verdict]) -> pa.Table:
    """One row per verdict object, history included (the SQL picks the verdicts that count)."""
    rows = [
        {
            "verdict_id": v.verdict_id,
            "flag_id": v.flag_id,
            "call_id": v.call_id,
            "call_date": date.fromisoformat(v.call_date),
            "rule_version": v.rule_version,
            "reviewer": v.reviewer,
            "verdict": v.verdict,
            "comment": v.comment,
            "created_at": datetime.fromisoformat(v.created_at),
            "verdict_key": v.key,
        }
        for v in verdicts
    ]
    return pa.Table.from_pylist(rows, schema=VERDICTS_SCHEMA)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source_sql(con: duckdb.DuckDBPyConnection, store: CuratedStore, table: str) -> str:
    """The relation a staging view reads for ``table``: its Parquet, or an empty typed relation."""
    if next(store.table_keys(table), None) is not None:
        # Partition types are fixed: a call id like "00123" must stay text, never become a number.
        return (
            f"read_parquet({_literal(store.uri(table + '/*/*/*.parquet'))}, hive_partitioning = true, "
            "union_by_name = true, hive_types = {'date': DATE, 'call_id': VARCHAR})"
        )
    schema = TABLES[table]
    types = [str(t) for t in con.from_arrow(schema.empty_table()).types]
    columns = [f'cast(null as {t}) as "{f.name}"' for f, t in zip(schema, types)]
    return f"(select {', '.join(columns)}, cast(null as DATE) as \"date\" where false)"


def _file_commits_sql(store: CuratedStore) -> str:
    """A relation of every table file under the root: table_name, call_date, call_id, file_name
    and the commit id in its footer (null for a file written before commit ids)."""
    parts = []
    for table in TABLES:
        if next(store.table_keys(table), None) is None:
            continue
        glob = _literal(store.uri(table + "/*/*/*.parquet"))
        parts.append(
            f"select {_literal(table)} as table_name, file_name, "
            f"max(case when decode(key) = {_literal(COMMIT_ID_KEY)} then decode(value) end) as commit_id "
            f"from parquet_kv_metadata({glob}) group by file_name"
        )
    if not parts:
        return "(select cast(null as VARCHAR) as table_name, cast(null as DATE) as call_date, cast(null as VARCHAR) as call_id, " \
               "cast(null as VARCHAR) as file_name, cast(null as VARCHAR) as commit_id where false)"
    union = " union all ".join(parts)
    return (
        "(select table_name, cast(regexp_extract(file_name, '/date=([^/]+)/call_id=[^/]+/[^/]+$', 1) as DATE) as call_date, "
        "regexp_extract(file_name, '/call_id=([^/]+)/[^/]+$', 1) as call_id, file_name, commit_id "
        f"from ({union}))"
    )


def _render(sql: str, root: str, sources: dict[str, str], file_commits: str = "") -> str:
    sql = sql.replace("{{ curated_root }}", root.replace("'", "''"))
    sql = sql.replace("{{ file_commits }}", file_commits)
    for table, relation in sources.items():
        sql = sql.replace("{{ source('" + table + "') }}", relation)
    return sql


def _s3_secret_sql(settings: Settings) -> str:
    """A temporary (never persisted) DuckDB secret with boto3's credentials for the curated bucket."""
    s3 = settings.s3
    creds = object_store.credentials(s3)
    if creds is None:
        raise MartsBuildError("no AWS credentials found for the curated bucket (boto3's credential chain)")
    key_id, secret, token = creds
    options = [("TYPE", "s3"), ("KEY_ID", _literal(key_id)), ("SECRET", _literal(secret)), ("REGION", _literal(s3.region))]
    if token:
        options.append(("SESSION_TOKEN", _literal(token)))
    if s3.endpoint_url:
        url = urlparse(s3.endpoint_url)
        options += [
            ("ENDPOINT", _literal(url.netloc)),
            ("URL_STYLE", "'path'"),  # bucket names do not resolve as hostnames on a local endpoint
            ("USE_SSL", "true" if url.scheme == "https" else "false"),
        ]
    return "CREATE OR REPLACE TEMPORARY SECRET callaffect_curated (" + ", ".join(f"{k} {v}" for k, v in options) + ")"


def load_httpfs(con: duckdb.DuckDBPyConnection) -> None:
    """Load DuckDB's httpfs extension offline, from the duckdb-extension-httpfs package.

    The package ships the binary but does not register it with DuckDB (no autoload, and
    ``LOAD httpfs`` would look in ~/.duckdb or download), so it is loaded from its path.
    """
    import duckdb_extension_httpfs

    package = Path(duckdb_extension_httpfs.__file__).parent
    binary = package / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not binary.is_file():
        raise MartsBuildError(f"duckdb-extension-httpfs has no httpfs binary for DuckDB {duckdb.__version__} in {package}")
    con.execute(f"LOAD {_literal(str(binary))}")


# httpfs retries a failed request (I/O error, 5xx, SlowDown) 3 times after 100/400/1600 ms by
# default; a throttled bucket then fails the build while boto3's 10 attempts carry on. These
# match boto3's: 10 attempts, doubling from 100 ms (at most ~100 s on one request).
HTTP_RETRY_SETTINGS = {"http_retries": 10, "http_retry_wait_ms": 100, "http_retry_backoff": 2}


def attach_curated(con: duckdb.DuckDBPyConnection, settings: Settings, root: str) -> None:
    """Let ``con`` read the curated root: for s3:// load httpfs, its retries and the S3 secret."""
    if root.startswith("s3://"):
        load_httpfs(con)
        for name, value in HTTP_RETRY_SETTINGS.items():
            con.execute(f"SET {name} = {value}")
        con.execute(_s3_secret_sql(settings))


def _sanity(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Check the build is whole and consistent; return rows per table."""
    names = [r[0] for r in con.execute("select table_name from duckdb_tables() where schema_name = 'main' order by 1").fetchall()]
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        raise MartsBuildError(f"sanity: missing tables {', '.join(missing)}")
    dupes = con.execute("select call_id, count(*) from dim_calls group by 1 having count(*) > 1 limit 3").fetchall()
    if dupes:
        raise MartsBuildError(f"sanity: call ids loaded more than once (under two dates?): {dupes}")
    for table in names:
        if table.startswith("fct_") and table != "fct_call_status":
            sql = f'select count(*) from "{table}" where call_id not in (select call_id from dim_calls)'
            orphans = con.execute(sql).fetchone()[0]
            if orphans:
                raise MartsBuildError(f"sanity: {table} has {orphans} rows of calls not in dim_calls")
    return {t: con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in names}


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


# A build that saw a call recommitted while it read the call's files starts over this many times
# in all (a commit takes seconds; a build that keeps losing the race fails, the old file stays).
_BUILD_ATTEMPTS = 3


class _Recommitted(MartsBuildError):
    """Some loadable call's table files changed commit while the build read them."""


def _recheck_commits(con: duckdb.DuckDBPyConnection, file_commits: str) -> None:
    """Read the files' commit ids again: a loadable call whose files changed since the build
    first read them may have been read half old, half new."""
    changed = con.execute(
        f"select count(distinct m.call_id) from src_manifests as m join src_file_commits as f using (call_id, call_date) "
        f"left join {file_commits} as now using (table_name, file_name) "
        "where m.loadable and now.commit_id is distinct from f.commit_id"
    ).fetchone()[0]
    if changed:
        raise _Recommitted(f"{changed} call(s) were recommitted during the build")


def build_marts(
    settings: Settings,
    curated_root: str | os.PathLike | None = None,
    out_path: str | os.PathLike | None = None,
    sql_dir: str | os.PathLike | None = None,
) -> MartsReport:
    """Build the marts from ``curated_root`` (default: the configured curated bucket and prefix)
    into ``out_path`` (default: settings.marts.duckdb_path), swapping the file in atomically.
    A build that a reprocessing raced (see "Reprocessing" above) starts over."""
    for attempt in range(1, _BUILD_ATTEMPTS + 1):
        try:
            return _build_once(settings, curated_root, out_path, sql_dir)
        except _Recommitted as exc:
            if attempt == _BUILD_ATTEMPTS:
                raise
            log.warning("marts build %d of %d: %s; building again", attempt, _BUILD_ATTEMPTS, exc)
    raise AssertionError("unreachable")


def _build_once(
    settings: Settings,
    curated_root: str | os.PathLike | None,
    out_path: str | os.PathLike | None,
    sql_dir: str | os.PathLike | None,
) -> MartsReport:
    started = time.perf_counter()
    store = CuratedStore(settings, curated_root)
    target = Path(out_path or settings.marts.duckdb_path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    sql_root = Path(sql_dir) if sql_dir is not None else SQL_DIR
    _remove(building)
    try:
        con = duckdb.connect(str(building))
        try:
            attach_curated(con, settings, store.root)
            manifests = store.manifests()
            con.from_arrow(_manifests_table(manifests)).create("src_manifests")
            con.from_arrow(_verdicts_table(ReviewStore(settings, root=store.root).verdicts())).create("src_qa_verdicts")
            sources = {table: _source_sql(con, store, table) for table in TABLES}
            file_commits = _file_commits_sql(store)
            for layer in LAYERS:
                for path in sorted((sql_root / layer).glob("*.sql")):
                    sql = _render(path.read_text(), store.root, sources, file_commits)
                    if "{{" in sql:
                        raise MartsBuildError(f"{layer}/{path.name}: unknown placeholder near {sql[sql.index('{{'):][:40]!r}")
                    try:
                        con.execute(sql)
                    except duckdb.Error as exc:
                        raise MartsBuildError(f"{layer}/{path.name}: {exc}") from exc
            _recheck_commits(con, file_commits)
            tables = _sanity(con)
            counts = con.execute(
                "select count(*) filter (where loadable), count(*) filter (where status = 'quarantined'),"
                " count(*) filter (where status = 'ok' and quality_passed is null) from src_manifests"
            ).fetchone()
            verdicts_not_loaded = con.execute(
                "select count(*) from src_qa_verdicts anti join fct_qa_verdicts using (verdict_id)"
            ).fetchone()[0]
            con.execute("checkpoint")
        finally:
            con.close()
        building.chmod(0o640)  # analysts' group may read it; scores are personal data, not public
        os.replace(building, target)
    except BaseException:
        _remove(building)
        raise
    report = MartsReport(
        path=str(target),
        curated_root=store.root,
        tables=tables,
        calls_loaded=tables["dim_calls"],
        calls_quarantined=counts[1],
        calls_pending_gate=counts[2],
        verdicts_not_loaded=verdicts_not_loaded,
        built_at=utc_now().isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
    )
    if counts[0] != report.calls_loaded:  # a loadable manifest whose calls file is missing
        log.warning("%d loadable call(s) but %d in dim_calls", counts[0], report.calls_loaded)
    log.info("marts built: %s (%d calls, %.2f s)", target, report.calls_loaded, report.seconds)
    return report


def open_marts(
    settings: Settings, path: str | os.PathLike | None = None, curated_root: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the marts file. With ``curated_root`` (the one the file was built
    from) the staging views work too: for s3:// it loads httpfs and the S3 secret."""
    con = duckdb.connect(str(path or settings.marts.duckdb_path), read_only=True)
    if curated_root is not None:
        attach_curated(con, settings, str(curated_root))
    return con


def sample_queries() -> dict[str, str]:
    """Analyst queries shown in the README and the demo (they read only materialised tables)."""
    return {
        "top_flags": (
            "select score_rank, call_id, speaker, round(start_s, 1) as start_s, round(end_s, 1) as end_s,\n"
            "       round(score, 2) as score, round(mean_valence, 2) as valence, left(speaker_text, 60) as said\n"
            "from mart_qa_flags order by score_rank limit 10"
        ),
        "daily_trends": (
            "select call_date, calls, round(minutes, 1) as minutes, round(frustrated_call_share, 2) as frustrated_share,\n"
            "       round(customer_valence, 2) as cust_valence, round(customer_arousal, 2) as cust_arousal,\n"
            "       round(flags_per_speech_hour, 1) as flags_per_hour\n"
            "from mart_daily_trends order by call_date"
        ),
        "customer_timeline": (
            "select call_id, round(mid_s, 1) as t_s, round(valence_smoothed, 2) as valence,\n"
            "       round(arousal_smoothed, 2) as arousal, round(confidence, 2) as confidence, in_flag\n"
            "from mart_speaker_affect_timeline\n"
            "where role = 'customer' and call_id = (select call_id from mart_qa_flags where score_rank = 1)\n"
            "order by start_s"
        ),
        "quarantined": (
            "select call_date, call_id, reason from fct_call_status where status = 'quarantined' order by call_date, call_id"
        ),
        "pipeline_health": (
            "select call_date, stage, stage_calls, round(seconds, 1) as seconds, round(mean_rtf, 3) as mean_rtf,\n"
            "       calls_loaded, calls_quarantined, calls_failed_gate\n"
            "from mart_pipeline_health order by call_date, stage"
        ),
    }


def format_query(path: str | os.PathLike, sql: str, max_rows: int = 20) -> str:
    """Run ``sql`` read-only on the marts file and return DuckDB's text rendering of the result."""
    with duckdb.connect(str(path), read_only=True) as con:
        return str(con.sql(sql).limit(max_rows))
