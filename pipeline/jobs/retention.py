"""Retention: one age limit per kind of data (``RetentionSettings``), each counted in days from
the call's date, enforced in one pass:

| kind (``data_kind``) | limit | what goes |
|---|---|---|
| ``raw_media`` | ``raw_max_age_days`` | the recording and its metadata JSON (raw bucket) |
| ``snippets`` | ``snippet_max_age_days`` | review audio (curated ``snippets/``) |
| ``utterance_text`` | ``utterance_text_max_age_days`` | ``utterances.text`` set to null (the call's Parquet file is rewritten; word counts, times and scores stay); reviewers' notes deleted and verdict comments emptied, since both may quote the call |
| ``affect_windows`` | ``affect_window_max_age_days`` | the call's ``speaker_affect``, ``face_affect`` and ``coaching_affect`` files (flags, conversation metrics, the call row and ``speaker_affect_quarters``, which the trends read, stay) |
| ``aggregates`` | ``aggregate_max_age_days`` | everything derived of the call: every table file, snippets, review records, its lease and failure records, and its manifest last (so it leaves every mart at the next rebuild) |

No other column quotes words: ``qa_flags.evidence`` holds utterance ids and window counts,
``face_tracks.link_evidence`` the linking rule's reason.

What is never touched:
- raw media of a call that is not processed: no manifest, quarantined (an operator must be able
  to reprocess it), not gated yet, committed for another object or changed since;
- derived data of a call committed ``ok`` but not gated yet (the gate still has to read it as
  written). A quarantined call's derived data follows the same limits as a loaded call's: the
  verdict is final, nothing loads it, and a reprocessing starts from the raw media and rewrites
  every file, so keeping its words longer than a good call's would protect nothing;
- a call's aggregates while its raw media is still there: without a manifest the media would be
  analysed again (the S3 lifecycle backstop removes such media later).
Snippets and review records go by the call's date alone: neither the gate nor a reprocessing reads them.

Every deletion or rewrite is one JSON Lines record under
``s3://<curated_bucket>/<ops_prefix>retention/`` and counted per kind in the report; a dry run
lists (and logs) what it would do. Idempotent: what is gone is no longer listed and text
already removed is not rewritten, so a second run does (and logs) nothing.

Cost per run: one listing of the raw prefix, of snippets/, _reviews/ and four table folders
(utterances and the affect tables), and one GET per call older than the text limit (its
utterances file, to see whether words are left) plus its manifest when there is work.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.clock import utc_now
from pipeline.manifest import CallManifest
from pipeline.schemas import TABLES
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.curated import (
    MANIFESTS, SNIPPETS, CuratedStore, call_folder, manifest_key, parquet_bytes, parse_snippet_key,
)
from pipeline.storage.keys import failures_key, landing_key, lease_key, parse_raw_key, retention_log_key
from pipeline.storage.reviews import REVIEWS, ReviewStore

RAW_MEDIA, SNIPPET_AUDIO, UTTERANCE_TEXT, AFFECT_WINDOWS, AGGREGATES = (
    "raw_media", "snippets", "utterance_text", "affect_windows", "aggregates",
)
DATA_KINDS = (RAW_MEDIA, SNIPPET_AUDIO, UTTERANCE_TEXT, AFFECT_WINDOWS, AGGREGATES)
AFFECT_TABLES = ("speaker_affect", "face_affect", "coaching_affect")
_TABLE_FILE = re.compile(r"^([a-z_]+)/date=(\d{4}-\d{2}-\d{2})/call_id=([^/]+)/part-0\.parquet$")
_REVIEW_FILE = re.compile(r"^" + REVIEWS + r"/(verdicts|notes)/date=(\d{4}-\d{2}-\d{2})/call_id=([^/]+)/[^/]+\.json$")


@dataclass
class RetentionReport:
    dry_run: bool
    # Every deletion or rewrite (would-be ones in a dry run): the log records, in the order done.
    deleted: list[dict] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)  # data past its age kept: data_kind, call_id, key, reason
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATA_KINDS, 0))  # records per data_kind
    log_key: str | None = None

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "counts": self.counts, "deleted": self.deleted, "kept": self.kept,
                "log_key": self.log_key}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _keep_reason(manifest: CallManifest | None, source_uri: str, last_modified: datetime) -> str | None:
    """Why this old recording must stay, or None when its raw media may go."""
    if manifest is None:
        return "not processed"
    if manifest.status != "ok":
        return f"quarantined: {manifest.reason}"
    if not manifest.loadable:
        return "not passed the quality gate yet"
    if manifest.source_uri != source_uri:
        return f"committed output is for another object ({manifest.source_uri})"
    processed_at = _parse_time(manifest.created_at)
    if processed_at is None or last_modified > processed_at:
        return "raw object changed after it was processed"
    return None


def _derived_keep_reason(manifest: CallManifest | None) -> str | None:
    """Why this call's derived data must stay as written, or None when its limits apply."""
    if manifest is None:
        return "not committed"
    if manifest.status == "ok" and not manifest.loadable:
        return "not passed the quality gate yet"
    return None  # loaded, or quarantined for good (see the module docstring)


class _Run:
    """One retention pass as of ``now``: the limits, what was done, what is gone."""

    def __init__(self, settings: Settings, client, now: datetime, report: RetentionReport):
        self.settings, self.policy, self.client = settings, settings.retention, client
        self.today = now.date()
        self.report = report
        self.store = CuratedStore(settings, client=client)
        self.reviews = ReviewStore(settings, client=client)
        self.done: set[tuple[str, str]] = set()  # (bucket, key) deleted or rewritten in this run
        self.gone_calls: set[tuple[str, str]] = set()  # (call_date, call_id) whose aggregates went
        self.raw_calls: set[tuple[str, str]] = set()  # calls with raw media left after the raw step
        self._manifests: dict[tuple[str, str], CallManifest | None] = {}

    def age(self, call_date: str) -> int:
        return (self.today - date.fromisoformat(call_date)).days

    def past(self, call_date: str, limit: int) -> bool:
        return self.age(call_date) > limit

    def manifest(self, call_date: str, call_id: str) -> CallManifest | None:
        if (call_date, call_id) not in self._manifests:
            self._manifests[(call_date, call_id)] = self.store.read_manifest(call_date, call_id)
        return self._manifests[(call_date, call_id)]

    def act(self, data_kind: str, kind: str, call_date: str, call_id: str, bucket: str, key: str,
            reason: str, do: Callable[[], None], *, action: str = "delete", sha256: str | None = None) -> None:
        """Do one deletion or rewrite (unless this is a dry run), then record it. Once per object
        and run: a snippet deleted as a snippet is not deleted again with its call's aggregates."""
        if (bucket, key) in self.done:
            return
        if not self.policy.dry_run:
            do()
        self.done.add((bucket, key))
        self.report.deleted.append({
            "data_kind": data_kind, "action": action, "kind": kind, "call_id": call_id, "call_date": call_date,
            "age_days": self.age(call_date), "bucket": bucket, "key": key, "sha256": sha256,
            "deleted_at": utc_now().isoformat(), "reason": reason, "dry_run": self.policy.dry_run,
        })
        self.report.counts[data_kind] += 1

    def keep(self, data_kind: str, call_id: str, key: str, reason: str) -> None:
        self.report.kept.append({"data_kind": data_kind, "call_id": call_id, "key": key, "reason": reason})

    def delete_curated(self, data_kind: str, kind: str, call_date: str, call_id: str, key: str, reason: str,
                       sha256: str | None = None) -> None:
        """Delete one object under the curated root (``key`` relative to it)."""
        self.act(data_kind, kind, call_date, call_id, self.settings.s3.curated_bucket, self.store.stored_key(key),
                 reason, lambda: self.store.delete(key), sha256=sha256)

    # --- raw media -------------------------------------------------------------------------

    def raw_media(self) -> None:
        """Delete (or, in a dry run, list) raw media past raw_max_age_days whose call may lose it."""
        s3, limit = self.settings.s3, self.policy.raw_max_age_days
        objects = {o.key: o for o in object_store.list_objects(self.client, s3.raw_bucket, s3.raw_prefix)}
        recordings = [r for r in (parse_raw_key(k, s3.raw_prefix) for k in objects) if r is not None]
        media_per_call = Counter((r.call_date, r.call_id) for r in recordings)
        for rec in recordings:
            if not self.past(rec.call_date, limit):
                self.raw_calls.add((rec.call_date, rec.call_id))
                continue
            manifest = self.manifest(rec.call_date, rec.call_id)
            reason = _keep_reason(manifest, f"s3://{s3.raw_bucket}/{rec.key}", objects[rec.key].last_modified)
            if reason:
                self.raw_calls.add((rec.call_date, rec.call_id))
                self.keep(RAW_MEDIA, rec.call_id, rec.key, reason)
                continue
            keys = [rec.key]
            # The metadata JSON is shared by every media file of the call: it goes with the last.
            if rec.metadata_key in objects and media_per_call[(rec.call_date, rec.call_id)] == 1:
                keys.insert(0, rec.metadata_key)  # first, so a crash never orphans it
            why = (f"processed (status ok, quality gate passed); recorded {rec.call_date}, "
                   f"older than {limit} days")
            for key in keys:
                kind = "media" if key == rec.key else "metadata"
                self.act(RAW_MEDIA, kind, rec.call_date, rec.call_id, s3.raw_bucket, key, why,
                         lambda key=key: object_store.delete_object(self.client, s3.raw_bucket, key),
                         sha256=manifest.sha256)

    # --- review snippets -------------------------------------------------------------------

    def snippets(self) -> None:
        """Delete (or list) review snippets of calls recorded past snippet_max_age_days."""
        limit = self.policy.snippet_max_age_days
        for key in self.store.list(SNIPPETS + "/"):
            found = parse_snippet_key(key, "")
            if found is None or not self.past(found[0], limit):
                continue
            self.delete_curated(SNIPPET_AUDIO, "snippet", found[0], found[1], key,
                                f"review snippet; recorded {found[0]}, older than {limit} days")

    # --- aggregates: the whole call ----------------------------------------------------------

    def aggregates(self, review_keys: list[tuple[str, str, str, str]]) -> None:
        limit = self.policy.aggregate_max_age_days
        committed = self.store.committed_calls()
        for call_date, call_id in sorted(committed):
            if not self.past(call_date, limit):
                continue
            manifest = self.manifest(call_date, call_id)
            reason = _derived_keep_reason(manifest)
            if reason is None and (call_date, call_id) in self.raw_calls:
                reason = "raw media still present: without its manifest the call would be analysed again"
            if reason:
                self.keep(AGGREGATES, call_id, manifest_key("", call_date, call_id), reason)
                continue
            why = f"call recorded {call_date}, older than {limit} days: everything derived of it goes"
            sha = manifest.sha256 if manifest else None
            for folder, kind in [*((t, t) for t in TABLES), (SNIPPETS, "snippet")]:
                for key in self.store.list(call_folder("", folder, call_date, call_id)):
                    self.delete_curated(AGGREGATES, kind, call_date, call_id, key, why, sha)
            for folder, day, cid, key in review_keys:
                if (day, cid) == (call_date, call_id):
                    self.delete_curated(AGGREGATES, f"review_{folder[:-1]}", call_date, call_id, key, why, sha)
            # Assignments are filed by call id alone: they go with the last date that call id has.
            if not any(cid == call_id and day != call_date for day, cid in committed - self.gone_calls):
                for key in self.store.list(f"{REVIEWS}/assignments/call_id={call_id}/"):
                    self.delete_curated(AGGREGATES, "review_assignment", call_date, call_id, key, why, sha)
            s3 = self.settings.s3
            for kind, key in (("lease", lease_key(s3.ops_prefix, call_date, call_id)),
                              ("failures", failures_key(s3.ops_prefix, call_date, call_id)),
                              ("landing", landing_key(s3.ops_prefix, call_date, call_id))):
                if next(object_store.list_objects(self.client, s3.curated_bucket, key), None) is not None:
                    self.act(AGGREGATES, kind, call_date, call_id, s3.curated_bucket, key, why,
                             lambda key=key: object_store.delete_object(self.client, s3.curated_bucket, key),
                             sha256=sha)
            # The manifests a reprocessing replaced (they hold the subject id too).
            current = manifest_key("", call_date, call_id)
            for key in self.store.list(call_folder("", MANIFESTS, call_date, call_id)):
                if key != current:
                    self.delete_curated(AGGREGATES, "manifest_history", call_date, call_id, key, why, sha)
            # Last: while the manifest is there, a crash half-way is finished by the next run.
            self.delete_curated(AGGREGATES, "manifest", call_date, call_id, current, why, sha)
            self.gone_calls.add((call_date, call_id))

    # --- affect windows ----------------------------------------------------------------------

    def affect_windows(self) -> None:
        limit = self.policy.affect_window_max_age_days
        by_call: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for table in AFFECT_TABLES:
            for key in self.store.table_keys(table):
                m = _TABLE_FILE.match(key)
                if m and self.past(m.group(2), limit) and (m.group(2), m.group(3)) not in self.gone_calls:
                    by_call.setdefault((m.group(2), m.group(3)), []).append((table, key))
        for (call_date, call_id), files in sorted(by_call.items()):
            manifest = self.manifest(call_date, call_id)
            reason = _derived_keep_reason(manifest)
            if reason:
                for _, key in files:
                    self.keep(AFFECT_WINDOWS, call_id, key, reason)
                continue
            why = f"affect windows; call recorded {call_date}, older than {limit} days"
            for table, key in files:
                self.delete_curated(AFFECT_WINDOWS, table, call_date, call_id, key, why, manifest.sha256)

    # --- utterance text ----------------------------------------------------------------------

    def utterance_text(self, review_keys: list[tuple[str, str, str, str]]) -> None:
        limit = self.policy.utterance_text_max_age_days
        why = f"utterance text; call recorded {{}}, older than {limit} days"
        for key in self.store.table_keys("utterances"):
            m = _TABLE_FILE.match(key)
            if not m or not self.past(m.group(2), limit) or (m.group(2), m.group(3)) in self.gone_calls:
                continue
            call_date, call_id = m.group(2), m.group(3)
            data = self.store.read_bytes(key)
            if data is None:
                continue  # deleted since the listing
            table = pq.read_table(pa.BufferReader(data))
            if table.num_rows == 0 or table.column("text").null_count == table.num_rows:
                continue  # no words left: done by an earlier run (idempotent, nothing logged)
            manifest = self.manifest(call_date, call_id)
            reason = _derived_keep_reason(manifest)
            if reason:
                self.keep(UTTERANCE_TEXT, call_id, key, reason)
                continue
            self.act(UTTERANCE_TEXT, "utterances", call_date, call_id, self.settings.s3.curated_bucket,
                     self.store.stored_key(key), why.format(call_date) + ": text set to null",
                     lambda key=key, table=table: self.store.write_bytes(key, parquet_bytes(_without_text(table))),
                     action="rewrite", sha256=manifest.sha256)
        # Reviewers' words about the call may quote it: notes go, verdicts keep their verdict only.
        for folder, call_date, call_id, key in review_keys:
            if not self.past(call_date, limit) or (call_date, call_id) in self.gone_calls:
                continue
            if folder == "notes":
                self.delete_curated(UTTERANCE_TEXT, "review_note", call_date, call_id, key,
                                    why.format(call_date) + ": a reviewer's note may quote it")
        quoted = {(d, c) for folder, d, c, _ in review_keys
                  if folder == "verdicts" and self.past(d, limit) and (d, c) not in self.gone_calls}
        for call_date, call_id in sorted(quoted):
            for verdict in self.reviews.verdicts_of_call(call_date, call_id):
                if not verdict.comment:
                    continue
                self.act(UTTERANCE_TEXT, "review_verdict", call_date, call_id, self.settings.s3.curated_bucket,
                         self.store.stored_key(verdict.key),
                         why.format(call_date) + ": the verdict's comment emptied (it may quote the call)",
                         lambda v=verdict: self.reviews.add_verdict(dataclasses.replace(v, comment="")),
                         action="rewrite")

    def review_keys(self) -> list[tuple[str, str, str, str]]:
        """(folder, call_date, call_id, key) of every verdict and note."""
        found = []
        for folder in ("verdicts", "notes"):
            for key in self.store.list(f"{REVIEWS}/{folder}/"):
                m = _REVIEW_FILE.match(key)
                if m:
                    found.append((m.group(1), m.group(2), m.group(3), key))
        return found


def _without_text(table: pa.Table) -> pa.Table:
    """The utterances with ``text`` null and every other column as it was."""
    at = table.schema.get_field_index("text")
    return table.set_column(at, table.schema.field(at), pa.nulls(table.num_rows, pa.string()))


def run_retention(settings: Settings, *, now: datetime | None = None, client=None) -> RetentionReport:
    """Apply every retention limit as of ``now`` (default: the current time)."""
    s3 = settings.s3
    client = client or object_store.s3_client(s3)
    report = RetentionReport(dry_run=settings.retention.dry_run)
    run = _Run(settings, client, now or utc_now(), report)
    try:
        run.raw_media()
        run.snippets()
        review_keys = run.review_keys()
        # The whole call first: what it deletes, the narrower limits need not touch.
        run.aggregates(review_keys)
        run.affect_windows()
        run.utterance_text(review_keys)
    finally:
        # Written even when a step fails half-way, so everything that happened is logged.
        if report.deleted:
            report.log_key = retention_log_key(s3.ops_prefix, utc_now())
            body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in report.deleted)
            object_store.put_bytes(client, s3.curated_bucket, report.log_key, body.encode(), "application/x-ndjson")
    return report
