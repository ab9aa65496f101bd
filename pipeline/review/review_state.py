"""The app's view of the review record: verdicts and assignments, indexed in memory.

The store (pipeline.storage.reviews) is the system of record; listing it on every page would
cost a round trip per object. The index is loaded once, updated on every write the app makes
(so a verdict shows at once), and reloaded every ``refresh_s`` to pick up other instances' writes.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from pipeline.settings import RedactionSettings
from pipeline.stages.text.redaction import redact_text
from pipeline.storage.reviews import Assignment, Note, ReviewStore, Verdict, ViewEvent, current_assignments


class ReviewState:
    def __init__(self, store: ReviewStore, refresh_s: float = 30.0, redaction: RedactionSettings | None = None):
        self._store = store
        # Reviewers quote calls: their words go through the transcripts' redaction before they are kept.
        self._redaction = redaction if redaction is not None else RedactionSettings()
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._loaded_at = -float("inf")
        self._verdicts: dict[str, list[Verdict]] = {}
        self._assigned: dict[str, str] = {}

    def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._refresh_s:
            return
        by_flag = defaultdict(list)
        for v in sorted(self._store.verdicts(), key=lambda v: v.created_at):
            by_flag[v.flag_id].append(v)
        assigned = {flag: a.reviewer for flag, a in current_assignments(self._store.assignments()).items()}
        with self._lock:
            self._verdicts, self._assigned = dict(by_flag), assigned
            self._loaded_at = time.monotonic()

    # --- reads --------------------------------------------------------------------------------

    def status(self, flag_id: str) -> str:
        """The latest verdict given on the flag, by anyone; "unreviewed" when none."""
        self._fresh()
        given = self._verdicts.get(flag_id)
        return given[-1].verdict if given else "unreviewed"

    def verdicts_of(self, flag_id: str) -> list:
        self._fresh()
        return list(self._verdicts.get(flag_id, ()))

    def flags_with_status(self, status: str) -> set[str]:
        self._fresh()
        return {flag for flag, given in self._verdicts.items() if given[-1].verdict == status}

    def reviewed_flags(self) -> set[str]:
        self._fresh()
        return set(self._verdicts)

    def notes_of(self, call: dict) -> list[Note]:
        """Read per call, when the call is opened: notes are many, and only one call's matter."""
        return sorted(self._store.notes_of_call(str(call["call_date"]), call["call_id"]), key=lambda n: n.created_at)

    def assignee(self, flag_id: str) -> str | None:
        self._fresh()
        return self._assigned.get(flag_id)

    def assigned_to(self, reviewer: str) -> set[str]:
        self._fresh()
        return {flag for flag, who in self._assigned.items() if who == reviewer}

    # --- writes: to the store first, then the index -------------------------------------------

    def add_verdict(self, flag: dict, reviewer: str, verdict: str, comment: str) -> None:
        comment, _ = redact_text(comment, self._redaction)
        written = self._store.add_verdict(Verdict.new(flag["flag_id"], flag["call_id"], str(flag["call_date"]),
                                                      flag["rule_version"], reviewer, verdict, comment))
        self._fresh()
        with self._lock:
            self._verdicts.setdefault(written.flag_id, []).append(written)

    def add_note(self, call: dict, utterance_id: int, author: str, text: str) -> None:
        text, _ = redact_text(text, self._redaction)
        self._store.add_note(Note.new(call["call_id"], str(call["call_date"]), utterance_id, author, text))

    def log_view(self, username: str, call_id: str) -> None:
        self._store.log_view(ViewEvent.new(username, call_id))

    def assign(self, flag: dict, reviewer: str, assigned_by: str) -> None:
        self._store.add_assignment(Assignment.new(flag["flag_id"], flag["call_id"], reviewer, assigned_by))
        self._fresh()
        with self._lock:
            self._assigned[flag["flag_id"]] = reviewer
