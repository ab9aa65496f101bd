"""Read-only, parameterised queries over the DuckDB marts for the review app.

The nightly build swaps the marts file with ``os.replace``: a connection opened before the swap
keeps reading the old file. The reader notices the new file (its inode changes) and reopens,
so the app keeps answering through a rebuild and shows the new night's data on the next request.
DuckDB hands a new connection to a path the database instance still open under that path, so the
reopen waits until no query of the old one is running and closes it first.
Every query binds its values as parameters; column and table names are fixed strings here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

REVIEW_STATUSES = ("unreviewed", "confirmed", "dismissed", "unsure")
TRENDS = ("worse", "turned_around")


@dataclass(frozen=True)
class QueueFilter:
    """What the reviewer asked the queue for; every field is validated by the route."""

    date_from: date | None = None
    date_to: date | None = None
    min_score: float = 0.0
    min_confidence: float = 0.0
    rule_version: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    trend: str | None = None  # "worse": ended worse than it began; "turned_around": the reverse
    flag_ids: frozenset[str] | None = None  # only these (the review status is known to the caller)
    without_flag_ids: frozenset[str] = frozenset()  # and never these
    page: int = 1
    page_size: int = 50


class MartsReader:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._turn = threading.Condition()
        self._running = 0  # queries on the current connection
        self._con: duckdb.DuckDBPyConnection | None = None
        self._identity: tuple[int, int] | None = None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the current file (reopened when the nightly build swapped it in)."""
        identity = self.identity()  # FileNotFoundError: no marts yet, answered as 503 by the app
        with self._turn:
            if self._con is None or identity != self._identity:
                self._turn.wait_for(lambda: self._running == 0)
                if self._con is not None:
                    self._con.close()
                self._con = duckdb.connect(str(self.path), read_only=True)
                self._identity = identity
            self._running += 1
            return self._con.cursor()  # one per query: cursors may be used from any thread

    def identity(self) -> tuple[int, int]:
        """Which file is current: it changes when the nightly build swaps a new one in."""
        stat = self.path.stat()
        return stat.st_ino, stat.st_mtime_ns

    def close(self) -> None:
        with self._turn:
            self._turn.wait_for(lambda: self._running == 0)
            if self._con is not None:
                self._con.close()
            self._con, self._identity = None, None

    def rows(self, sql: str, params: list | tuple = ()) -> list[dict]:
        cur = self._cursor()
        try:
            result = cur.execute(sql, list(params))
            names = [d[0] for d in result.description]
            return [dict(zip(names, row)) for row in result.fetchall()]
        finally:
            cur.close()
            with self._turn:
                self._running -= 1
                self._turn.notify_all()

    def has_table(self, name: str) -> bool:
        return bool(self.rows("select 1 from information_schema.tables where table_name = ?", [name]))

    def columns(self, table: str) -> set[str]:
        return {r["column_name"] for r in self.rows(
            "select column_name from information_schema.columns where table_name = ?", [table])}

    # --- the queue --------------------------------------------------------------------------

    def queue(self, f: QueueFilter) -> tuple[list[dict], int]:
        """One page of flagged segments, strongest first, and how many match in all."""
        where, params = ["f.score >= ?", "f.confidence >= ?"], [f.min_score, f.min_confidence]
        if f.date_from:
            where.append("f.call_date >= ?"); params.append(f.date_from)
        if f.date_to:
            where.append("f.call_date <= ?"); params.append(f.date_to)
        if f.rule_version:
            where.append("f.rule_version = ?"); params.append(f.rule_version)
        cols = self.columns("mart_qa_flags")
        for name, value in (("agent_id", f.agent_id), ("queue", f.queue)):
            if value:
                if name not in cols:
                    return [], 0
                where.append(f"f.{name} = ?"); params.append(value)
        if f.flag_ids is not None:
            if not f.flag_ids:
                return [], 0
            where.append("list_contains(?, f.flag_id)"); params.append(sorted(f.flag_ids))
        if f.without_flag_ids:
            where.append("not list_contains(?, f.flag_id)"); params.append(sorted(f.without_flag_ids))
        quarters = self.has_table("mart_call_quarters")
        join = "left join mart_call_quarters q using (call_id)" if quarters else ""
        shift = "q.valence_shift" if quarters else "cast(null as double)"
        if f.trend and not quarters:
            return [], 0
        if f.trend == "worse":
            where.append("q.ended_worse")
        elif f.trend == "turned_around":
            where.append("q.turned_around")
        base = f"from mart_qa_flags f {join} where {' and '.join(where)}"
        total = self.rows(f"select count(*) as n {base}", params)[0]["n"]
        extra = ", ".join(f"f.{c}" for c in ("agent_id", "queue") if c in cols)
        page = self.rows(
            f"select f.score_rank, f.call_id, f.call_date, f.flag_id, f.speaker, f.role, f.start_s, f.end_s, "
            f"f.score, f.confidence, f.mean_valence, f.mean_arousal, f.speaker_text, f.rule_version, "
            f"{shift} as valence_shift{', ' + extra if extra else ''} {base} "
            "order by f.score_rank limit ? offset ?",
            [*params, f.page_size, (f.page - 1) * f.page_size],
        )
        return page, total

    def rule_versions(self) -> list[str]:
        return [r["rule_version"] for r in self.rows("select distinct rule_version from mart_qa_flags order by 1")]

    # --- one call ---------------------------------------------------------------------------

    def call(self, call_id: str) -> dict | None:
        extra = "".join(f", {c}" for c in ("agent_id", "queue") if c in self.columns("dim_calls"))
        found = self.rows(
            "select call_id, call_date, duration_s, num_speakers, non_talk_s, overlap_s, has_video, channel_layout"
            f"{extra} from dim_calls where call_id = ?", [call_id])
        return found[0] if found else None

    def utterances(self, call_id: str) -> list[dict]:
        return self.rows(
            "select utterance_id, speaker, role, start_s, end_s, text, asr_confidence, text_valence "
            "from fct_utterances where call_id = ? order by start_s, utterance_id", [call_id])

    def affect(self, call_id: str) -> list[dict]:
        return self.rows(
            "select speaker, role, start_s, end_s, valence, arousal, confidence, text_valence, voice_arousal, "
            "face_valence, face_arousal, modalities from fct_speaker_affect where call_id = ? order by speaker, start_s",
            [call_id])

    def flags(self, call_id: str) -> list[dict]:
        return self.rows(
            "select flag_id, speaker, role, start_s, end_s, score, confidence, mean_valence, mean_arousal, evidence, "
            "rule_version from mart_qa_flags where call_id = ? order by start_s", [call_id])

    def conversation(self, call_id: str) -> list[dict]:
        return self.rows(
            "select speaker, role, talk_s, talk_share, n_turns, n_words, words_per_minute, interruptions_made, "
            "interruptions_received, longest_monologue_s from fct_conversation_metrics where call_id = ? order by speaker",
            [call_id])

    def quarters(self, call_id: str) -> dict | None:
        if not self.has_table("mart_call_quarters"):
            return None
        found = self.rows(
            "select q1_valence, q2_valence, q3_valence, q4_valence, valence_shift, ended_worse, turned_around "
            "from mart_call_quarters where call_id = ?", [call_id])
        return found[0] if found else None

    def flag(self, flag_id: str) -> dict | None:
        extra = ", snippet_key" if "snippet_key" in self.columns("mart_qa_flags") else ""
        found = self.rows(
            f"select flag_id, call_id, call_date, speaker, start_s, end_s, score, rule_version{extra} "
            "from mart_qa_flags where flag_id = ?", [flag_id])
        return found[0] if found else None
