"""The QA review record: verdicts on flags, notes on utterances, assignments, who viewed which
call, and the review app's accounts. It lives in the curated bucket: S3 is already the durable,
versioned, encrypted store, so there is no database service to run.

Every review write is a new object under a key of its own (creation time + a random id), never
a read-modify-write of a shared object: two reviewers saving at once both land, and the history
stays. Under the curated root:

    _reviews/verdicts/date=<call_date>/call_id=<call_id>/<created>-<verdict_id>.json
    _reviews/notes/date=<call_date>/call_id=<call_id>/<created>-<note_id>.json
    _reviews/assignments/call_id=<call_id>/<created>-<assignment_id>.json
    _reviews/views/date=<day viewed>/<at>-<view_id>.json
    _app/users/<username>.json        one per account, created only where none exists

``<created>`` is the UTC time written compactly (20240501T120000123456Z), so key order is time
order. The latest verdict per (flag, reviewer) counts; a flag's review status is the latest
verdict of anyone (``UNREVIEWED`` when none). Comments and notes may quote the call: they are
personal data and are never logged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pipeline.clock import utc_now
from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore, curated_root, normalise_root
from pipeline.storage.keys import valid_call_id

log = logging.getLogger(__name__)

REVIEWS = "_reviews"
USERS = "_app/users"
VERDICTS = ("confirmed", "dismissed", "unsure")
UNREVIEWED = "unreviewed"
ROLES = ("reviewer", "lead", "admin")
MAX_COMMENT_CHARS = 2000
MAX_NOTE_CHARS = 2000
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this bounds what one login may send
# The patterns are used with fullmatch ("$" would also admit a trailing newline). User names are
# lower case only, so "Alice" and "alice" can never be two accounts, and hold no "/": one key each.
USERNAME = re.compile(r"[a-z][a-z0-9_.-]{2,31}")
_FLAG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,255}")
_RULE_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_RECORD_ID = re.compile(r"[0-9a-f]{32}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --- field checks: each raises ValueError naming the field ---------------------------------------


def _pattern(name: str, value: object, pattern: re.Pattern, what: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{name}: {what}, got {str(value)[:80]!r}")


def _username(name: str, value: object) -> None:
    _pattern(name, value, USERNAME, "3-32 characters: a lower-case letter, then lower-case letters, digits, '_', '.', '-'")


def _call_id(value: object) -> None:
    # valid_call_id's pattern ends in "$", which also admits a trailing newline: refused here.
    if not isinstance(value, str) or not valid_call_id(value) or "\n" in value:
        raise ValueError(f"call_id: letters, digits, '_', '.', '-', starting with a letter or digit, got {str(value)[:80]!r}")


def _call_date(value: object) -> None:
    try:
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise ValueError(value)
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"call_date: a date as YYYY-MM-DD, got {str(value)[:40]!r}") from None


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: one of {', '.join(choices)}, got {str(value)[:40]!r}")


def _text(name: str, value: object, max_chars: int, required: bool) -> None:
    # The value itself is never echoed: free text may quote the call.
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be text")
    if len(value) > max_chars:
        raise ValueError(f"{name}: at most {max_chars} characters, got {len(value)}")
    if required and not value.strip():
        raise ValueError(f"{name}: must not be empty")


def _timestamp(name: str, value: object) -> datetime:
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise ValueError(f"{name}: an ISO 8601 time with its UTC offset, got {str(value)[:40]!r}")
    return stamp


def _compact(iso_time: str) -> str:
    return datetime.fromisoformat(iso_time).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _now() -> str:
    return utc_now().isoformat()


def _new_id() -> str:
    return uuid.uuid4().hex


# --- the records -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A reviewer's verdict on one flag. A changed mind is a new verdict; the latest counts."""

    verdict_id: str
    flag_id: str
    call_id: str
    call_date: str
    rule_version: str
    reviewer: str
    verdict: str
    comment: str = dataclasses.field(repr=False)  # may quote the call: kept out of logs and tracebacks
    created_at: str

    def __post_init__(self) -> None:
        _pattern("verdict_id", self.verdict_id, _RECORD_ID, "32 lower-case hex digits (a uuid4)")
        _pattern("flag_id", self.flag_id, _FLAG_ID, "letters, digits, '_', '.', ':', '-', at most 256")
        _call_id(self.call_id)
        _call_date(self.call_date)
        _pattern("rule_version", self.rule_version, _RULE_VERSION, "letters, digits, '_', '.', '-', at most 64")
        _username("reviewer", self.reviewer)
        _choice("verdict", self.verdict, VERDICTS)
        _text("comment", self.comment, MAX_COMMENT_CHARS, required=False)
        _timestamp("created_at", self.created_at)

    @classmethod
    def new(cls, flag_id: str, call_id: str, call_date: str, rule_version: str, reviewer: str,
            verdict: str, comment: str = "") -> "Verdict":
        return cls(_new_id(), flag_id, call_id, call_date, rule_version, reviewer, verdict, comment, _now())

    @property
    def key(self) -> str:
        return (f"{REVIEWS}/verdicts/date={self.call_date}/call_id={self.call_id}/"
                f"{_compact(self.created_at)}-{self.verdict_id}.json")


@dataclasses.dataclass(frozen=True)
class Note:
    """A reviewer's note on one utterance of a call."""

    note_id: str
    call_id: str
    call_date: str
    utterance_id: int
    author: str
    text: str = dataclasses.field(repr=False)  # may quote the call: kept out of logs and tracebacks
    created_at: str

    def __post_init__(self) -> None:
        _pattern("note_id", self.note_id, _RECORD_ID, "32 lower-case hex digits (a uuid4)")
        _call_id(self.call_id)
        _call_date(self.call_date)
        if isinstance(self.utterance_id, bool) or not isinstance(self.utterance_id, int) or self.utterance_id < 0:
            raise ValueError(f"utterance_id: a whole number >= 0, got {str(self.utterance_id)[:40]!r}")
        _username("author", self.author)
        _text("text", self.text, MAX_NOTE_CHARS, required=True)
        _timestamp("created_at", self.created_at)

    @classmethod
    def new(cls, call_id: str, call_date: str, utterance_id: int, author: str, text: str) -> "Note":
        return cls(_new_id(), call_id, call_date, utterance_id, author, text, _now())

    @property
    def key(self) -> str:
        return (f"{REVIEWS}/notes/date={self.call_date}/call_id={self.call_id}/"
                f"{_compact(self.created_at)}-{self.note_id}.json")


@dataclasses.dataclass(frozen=True)
class Assignment:
    """A flag given to a reviewer; a later assignment of the same flag replaces it."""

    assignment_id: str
    flag_id: str
    call_id: str
    reviewer: str
    assigned_by: str
    created_at: str

    def __post_init__(self) -> None:
        _pattern("assignment_id", self.assignment_id, _RECORD_ID, "32 lower-case hex digits (a uuid4)")
        _pattern("flag_id", self.flag_id, _FLAG_ID, "letters, digits, '_', '.', ':', '-', at most 256")
        _call_id(self.call_id)
        _username("reviewer", self.reviewer)
        _username("assigned_by", self.assigned_by)
        _timestamp("created_at", self.created_at)

    @classmethod
    def new(cls, flag_id: str, call_id: str, reviewer: str, assigned_by: str) -> "Assignment":
        return cls(_new_id(), flag_id, call_id, reviewer, assigned_by, _now())

    @property
    def key(self) -> str:
        return f"{REVIEWS}/assignments/call_id={self.call_id}/{_compact(self.created_at)}-{self.assignment_id}.json"


@dataclasses.dataclass(frozen=True)
class ViewEvent:
    """Who opened which call, when: the access log of the personal data the app shows."""

    view_id: str
    user: str
    call_id: str
    at: str

    def __post_init__(self) -> None:
        _pattern("view_id", self.view_id, _RECORD_ID, "32 lower-case hex digits (a uuid4)")
        _username("user", self.user)
        _call_id(self.call_id)
        _timestamp("at", self.at)

    @classmethod
    def new(cls, user: str, call_id: str) -> "ViewEvent":
        return cls(_new_id(), user, call_id, _now())

    @property
    def key(self) -> str:
        day = datetime.fromisoformat(self.at).astimezone(timezone.utc).date().isoformat()
        return f"{REVIEWS}/views/date={day}/{_compact(self.at)}-{self.view_id}.json"


@dataclasses.dataclass(frozen=True)
class Account:
    """A review app account. Only an argon2 hash of the password is kept."""

    username: str
    role: str
    password_hash: str = dataclasses.field(repr=False)
    created_at: str
    disabled: bool = False

    def __post_init__(self) -> None:
        _username("username", self.username)
        _choice("role", self.role, ROLES)
        if not isinstance(self.password_hash, str) or not self.password_hash.startswith("$argon2"):
            raise ValueError("password_hash: an argon2 hash")
        _timestamp("created_at", self.created_at)
        if not isinstance(self.disabled, bool):
            raise ValueError("disabled: true or false")

    @property
    def key(self) -> str:
        return account_key(self.username)


def account_key(username: str) -> str:
    _username("username", username)
    return f"{USERS}/{username}.json"


def call_review_folders(call_date: str, call_id: str) -> list[str]:
    """The folders (each ending with "/") that hold one call's verdicts, notes and assignments:
    what erasing the call removes here. View events name the call only in their body
    (``VIEWS_FOLDER``)."""
    _call_date(call_date)
    _call_id(call_id)
    return [
        f"{REVIEWS}/verdicts/date={call_date}/call_id={call_id}/",
        f"{REVIEWS}/notes/date={call_date}/call_id={call_id}/",
        f"{REVIEWS}/assignments/call_id={call_id}/",
    ]


VIEWS_FOLDER = f"{REVIEWS}/views/"


def _to_json(record) -> bytes:
    return json.dumps(dataclasses.asdict(record), sort_keys=True).encode()


def _from_json(cls, blob: bytes):
    """The record in ``blob``; ValueError when it is not one (unknown or missing fields too)."""
    try:
        return cls(**json.loads(blob))
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a {cls.__name__}: {type(exc).__name__}") from None


# --- which verdict counts ----------------------------------------------------------------------


def _time_order(verdict: Verdict) -> tuple[datetime, str]:
    return _timestamp("created_at", verdict.created_at), verdict.verdict_id


def latest_by_reviewer(verdicts: Iterable[Verdict]) -> dict[tuple[str, str], Verdict]:
    """(flag_id, reviewer) -> that reviewer's latest verdict on the flag: the ones that count."""
    latest: dict[tuple[str, str], Verdict] = {}
    for v in sorted(verdicts, key=_time_order):
        latest[(v.flag_id, v.reviewer)] = v
    return latest


def review_statuses(verdicts: Iterable[Verdict]) -> dict[str, str]:
    """flag_id -> its review status, the latest verdict of anyone. A flag that is not a key is
    ``UNREVIEWED``: ``review_statuses(vs).get(flag_id, UNREVIEWED)``."""
    return {v.flag_id: v.verdict for v in sorted(verdicts, key=_time_order)}


def current_assignments(assignments: Iterable[Assignment]) -> dict[str, Assignment]:
    """flag_id -> its latest assignment."""
    ordered = sorted(assignments, key=lambda a: (_timestamp("created_at", a.created_at), a.assignment_id))
    return {a.flag_id: a for a in ordered}


# --- the store ---------------------------------------------------------------------------------


class ReviewStore:
    """Writes and reads the review record under a curated root: by default the configured
    curated bucket and prefix; ``root`` may name another ``s3://`` root or a local directory
    (tests, one host). S3 goes through ``client`` when given, else one made from the settings."""

    # argon2-cffi's defaults (argon2id, RFC 9106's low-memory profile). Raising them later makes
    # verify_password rehash each account at its next login.
    password_hasher = PasswordHasher()

    def __init__(self, settings: Settings, client=None, root: str | os.PathLike | None = None):
        root = normalise_root(root if root is not None else curated_root(settings))
        if client is None and root.startswith("s3://"):
            client = object_store.s3_client(settings.s3)
        self._client = client
        self._bucket = object_store.parse_s3_uri(root)[0] if root.startswith("s3://") else None
        self._objects = CuratedStore(settings, root, client)

    @property
    def root(self) -> str:
        return self._objects.root

    # --- review writes: a new object each ------------------------------------------------------

    def _add(self, record):
        self._objects.write_bytes(record.key, _to_json(record), "application/json")
        return record

    def add_verdict(self, verdict: Verdict) -> Verdict:
        return self._add(verdict)

    def add_note(self, note: Note) -> Note:
        return self._add(note)

    def add_assignment(self, assignment: Assignment) -> Assignment:
        return self._add(assignment)

    def log_view(self, view: ViewEvent) -> ViewEvent:
        return self._add(view)

    # --- review reads --------------------------------------------------------------------------

    def _read_all(self, folder: str, cls) -> list:
        """Every ``cls`` record under ``folder``, in key order (time order within a partition)."""
        keys = [k for k in self._objects.list(folder) if k.endswith(".json")]
        # One GET per object: in parallel, since S3 latency dominates (boto3 clients are thread-safe).
        with ThreadPoolExecutor(max_workers=16 if self._objects.is_s3 else 1) as pool:
            blobs = list(pool.map(self._objects.read_bytes, keys))
        records = []
        for key, blob in zip(keys, blobs):
            if blob is None:
                continue  # deleted since the listing
            try:
                records.append(_from_json(cls, blob))
            except ValueError as exc:
                # One hand-edited object must not hide every other reviewer's work.
                log.warning("skipped %s: %s", key, exc)
        return records

    def verdicts(self) -> list[Verdict]:
        """Every verdict of every call, history included."""
        return self._read_all(f"{REVIEWS}/verdicts/", Verdict)

    def verdicts_of_call(self, call_date: str, call_id: str) -> list[Verdict]:
        _call_date(call_date)
        _call_id(call_id)
        return self._read_all(f"{REVIEWS}/verdicts/date={call_date}/call_id={call_id}/", Verdict)

    def notes_of_call(self, call_date: str, call_id: str) -> list[Note]:
        _call_date(call_date)
        _call_id(call_id)
        return self._read_all(f"{REVIEWS}/notes/date={call_date}/call_id={call_id}/", Note)

    def assignments(self, call_id: str | None = None) -> list[Assignment]:
        """Every assignment, or those of one call; ``current_assignments`` says which hold."""
        if call_id is None:
            return self._read_all(f"{REVIEWS}/assignments/", Assignment)
        _call_id(call_id)
        return self._read_all(f"{REVIEWS}/assignments/call_id={call_id}/", Assignment)

    def views(self, day: str) -> list[ViewEvent]:
        """The calls viewed on ``day`` (YYYY-MM-DD, UTC), by whom, in time order."""
        _call_date(day)
        return self._read_all(f"{REVIEWS}/views/date={day}/", ViewEvent)

    # --- accounts ------------------------------------------------------------------------------

    def add_account(self, username: str, role: str, password: str) -> Account:
        """Create an account; ValueError when the name is taken (two admins adding the same name
        at once: exactly one wins) or a field is invalid."""
        _username("username", username)
        _choice("role", role, ROLES)
        _password(password)
        account = Account(username, role, self.password_hasher.hash(password), _now())
        if not self._objects.create_bytes(account.key, _to_json(account)):
            raise ValueError(f"username: an account named {username!r} already exists")
        return account

    def get_account(self, username: str) -> Account | None:
        blob = self._objects.read_bytes(account_key(username))
        return _from_json(Account, blob) if blob is not None else None

    def list_accounts(self) -> list[Account]:
        return self._read_all(f"{USERS}/", Account)

    def verify_password(self, username: str, password: str) -> Account | None:
        """The account when ``password`` is its password and it is enabled, else None.

        argon2's verify compares in constant time; an unknown or malformed name still costs one
        verification, so the answer's timing does not tell which names exist. A hash made with
        older parameters is replaced after a successful check (only if the account is unchanged
        since it was read)."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            return None  # said at once: the limit is public, and nothing about the name is looked up
        found = self._read_versioned(account_key(username)) if USERNAME.fullmatch(username or "") else None
        account = _from_json(Account, found[0]) if found else None
        try:
            self.password_hasher.verify(account.password_hash if account else _dummy_hash(self.password_hasher), password)
        except (VerificationError, InvalidHashError):
            return None
        if account is None or account.disabled:
            return None
        if self.password_hasher.check_needs_rehash(account.password_hash):
            rehashed = dataclasses.replace(account, password_hash=self.password_hasher.hash(password))
            if self._replace_if_unchanged(account.key, _to_json(rehashed), found[1]):
                account = rehashed
        return account

    # --- conditional writes, for the one shared object per account -----------------------------

    def _read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and a version to replace it against (the ETag on S3)."""
        if self._objects.is_s3:
            return object_store.get_bytes_and_etag(self._client, self._bucket, self._objects.stored_key(key))
        blob = self._objects.read_bytes(key)
        return (blob, hashlib.sha256(blob).hexdigest()) if blob is not None else None

    def _replace_if_unchanged(self, key: str, data: bytes, version: str) -> bool:
        """Replace ``key`` if it is still at ``version``: S3's If-Match makes it a compare-and-swap;
        a local root checks, then replaces (one host, no concurrent admins)."""
        if self._objects.is_s3:
            return object_store.put_conditional(
                self._client, self._bucket, self._objects.stored_key(key), data, if_etag=version) is not None
        current = self._read_versioned(key)
        if current is None or current[1] != version:
            return False
        self._objects.write_bytes(key, data, "application/json")
        return True


def _password(password: object) -> None:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(f"password: {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash of a random secret, made once per hasher, so a login for an unknown name costs one
    verification as a real one does."""
    return hasher.hash(_new_id())
