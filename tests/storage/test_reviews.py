"""The review record on moto's S3 server: each write is its own object, so concurrent reviewers
lose nothing; the latest verdict per flag and reviewer counts; every field is validated; and
accounts keep only an argon2 hash, refuse wrong passwords and unsafe names, and rehash."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher

from pipeline import cli
from pipeline.settings import ENV_PREFIX
from pipeline.storage import object_store
from pipeline.storage.reviews import (
    UNREVIEWED,
    Assignment,
    Note,
    ReviewStore,
    Verdict,
    ViewEvent,
    current_assignments,
    latest_by_reviewer,
    review_statuses,
)

T0 = datetime(2024, 5, 2, 9, 0, tzinfo=timezone.utc)
# Cheap parameters for accounts made in tests; the store's own hasher keeps argon2's defaults.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"


def _verdict(flag_id: str, reviewer: str, verdict: str, minute: int, call_id: str = "c1") -> Verdict:
    at = (T0 + timedelta(minutes=minute)).isoformat()
    return Verdict(f"{minute:032x}", flag_id, call_id, "2024-05-01", "frustration-v1", reviewer, verdict, "", at)


@pytest.fixture
def store(settings) -> ReviewStore:
    return ReviewStore(settings)


def _keys(settings, prefix: str) -> list[str]:
    client = object_store.s3_client(settings.s3)
    return [o.key for o in object_store.list_objects(client, settings.s3.curated_bucket, prefix)]


def test_verdicts_are_objects_of_their_own_and_the_latest_per_flag_and_reviewer_counts(settings, store):
    history = [
        _verdict("c1-f0", "alice", "confirmed", 1),
        _verdict("c1-f0", "alice", "dismissed", 2),  # alice changed her mind
        _verdict("c1-f0", "bob", "unsure", 3),
        _verdict("c1-f1", "bob", "confirmed", 4),
        _verdict("c2-f0", "alice", "dismissed", 5, call_id="c2"),
    ]
    for v in reversed(history):  # written out of order: time, not write order, decides
        store.add_verdict(v)

    keys = _keys(settings, "_reviews/verdicts/")
    assert len(keys) == 5
    assert "_reviews/verdicts/date=2024-05-01/call_id=c1/20240502T090100000000Z-" + "1".zfill(32) + ".json" in keys

    again = ReviewStore(settings)  # nothing is cached in the store: a new one reads the same record
    assert sorted(again.verdicts(), key=lambda v: v.created_at) == history
    of_c1 = again.verdicts_of_call("2024-05-01", "c1")
    assert {v.call_id for v in of_c1} == {"c1"} and len(of_c1) == 4

    latest = latest_by_reviewer(of_c1)
    assert {k: v.verdict for k, v in latest.items()} == {
        ("c1-f0", "alice"): "dismissed", ("c1-f0", "bob"): "unsure", ("c1-f1", "bob"): "confirmed",
    }
    statuses = review_statuses(of_c1)
    assert statuses == {"c1-f0": "unsure", "c1-f1": "confirmed"}
    assert statuses.get("c1-f9", UNREVIEWED) == UNREVIEWED


def test_concurrent_reviewers_lose_nothing(settings, store):
    new = [Verdict.new("c1-f0", "c1", "2024-05-01", "frustration-v1", f"rev{i:02d}", "confirmed", "same flag")
           for i in range(24)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(store.add_verdict, new))
    assert sorted(v.verdict_id for v in store.verdicts()) == sorted(v.verdict_id for v in new)
    assert len(latest_by_reviewer(store.verdicts())) == 24


def test_a_comment_round_trips_and_stays_out_of_the_repr(store):
    comment = "caller said: 'my card ends 4242' — fine to dismiss\nsecond line"
    v = store.add_verdict(Verdict.new("c1:SPEAKER_01:31.5", "c1", "2024-05-01", "frustration-v1", "alice", "dismissed", comment))
    [back] = store.verdicts_of_call("2024-05-01", "c1")
    assert back == v and back.comment == comment
    assert "4242" not in repr(back)


VALID = dict(verdict_id="a" * 32, flag_id="c1-f0", call_id="c1", call_date="2024-05-01", rule_version="frustration-v1",
             reviewer="alice", verdict="confirmed", comment="", created_at=T0.isoformat())


@pytest.mark.parametrize(
    "field, value",
    [
        ("verdict_id", "not-a-uuid"),
        ("flag_id", "c1/../f0"),
        ("call_id", "../c1"),
        ("call_date", "2024-02-30"),
        ("rule_version", "v1 or 1=1"),
        ("reviewer", "Alice"),
        ("verdict", "maybe"),
        ("comment", "x" * 2001),
        ("created_at", "2024-05-02T09:00:00"),  # no UTC offset
    ],
)
def test_every_verdict_field_is_validated_and_named(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        Verdict(**{**VALID, field: value})


def test_notes_assignments_and_views(settings, store):
    note = store.add_note(Note.new("c1", "2024-05-01", 7, "alice", "agent talks over the customer here"))
    assert store.notes_of_call("2024-05-01", "c1") == [note]
    assert store.notes_of_call("2024-05-01", "c2") == []
    for bad in (dict(utterance_id=-1), dict(utterance_id=True), dict(text="   "), dict(text="x" * 2001), dict(author="a")):
        field = next(iter(bad))
        with pytest.raises(ValueError, match=f"^{field}:"):
            dataclasses.replace(note, **bad)

    first = Assignment("1" * 32, "c1-f0", "c1", "alice", "lead1", T0.isoformat())
    moved = Assignment("2" * 32, "c1-f0", "c1", "bob", "lead1", (T0 + timedelta(hours=1)).isoformat())
    other = Assignment("3" * 32, "c2-f0", "c2", "alice", "lead1", T0.isoformat())
    for a in (moved, first, other):
        store.add_assignment(a)
    assert len(store.assignments()) == 3 and store.assignments("c2") == [other]
    assert {f: a.reviewer for f, a in current_assignments(store.assignments()).items()} == {"c1-f0": "bob", "c2-f0": "alice"}

    seen = store.log_view(ViewEvent.new("alice", "c1"))
    day = datetime.fromisoformat(seen.at).date().isoformat()
    assert _keys(settings, f"_reviews/views/date={day}/") == [seen.key]
    assert store.views(day) == [seen] and store.views("2000-01-01") == []


def test_a_malformed_object_is_skipped_not_fatal(settings, store, caplog):
    good = store.add_verdict(_verdict("c1-f0", "alice", "confirmed", 1))
    client = object_store.s3_client(settings.s3)
    bad_key = "_reviews/verdicts/date=2024-05-01/call_id=c1/20240502T100000000000Z-bad.json"
    object_store.put_bytes(client, settings.s3.curated_bucket, bad_key, json.dumps({**VALID, "verdict": "maybe"}).encode())
    assert store.verdicts() == [good]
    assert bad_key in caplog.text


def test_accounts_keep_a_hash_and_verify_passwords(settings, store):
    store.password_hasher = FAST_HASHER
    account = store.add_account("alice", "lead", PASSWORD)
    blob = object_store.get_bytes(object_store.s3_client(settings.s3), settings.s3.curated_bucket, "_app/users/alice.json")
    assert PASSWORD.encode() not in blob and json.loads(blob)["password_hash"].startswith("$argon2id$")
    assert account.password_hash not in repr(account)

    assert store.verify_password("alice", PASSWORD) == account
    assert store.verify_password("alice", PASSWORD + "!") is None
    assert store.verify_password("nobody", PASSWORD) is None
    assert store.verify_password("../alice", PASSWORD) is None
    assert store.verify_password("alice", PASSWORD + "x" * 1024) is None
    assert store.get_account("alice") == account and store.get_account("nobody") is None

    with pytest.raises(ValueError, match="^username: an account named 'alice' already exists"):
        store.add_account("alice", "admin", "another long password")
    assert store.get_account("alice").role == "lead"  # the first account was not overwritten

    store.add_account("bob.smith", "reviewer", PASSWORD)
    assert [(a.username, a.role) for a in sorted(store.list_accounts(), key=lambda a: a.username)] == [
        ("alice", "lead"), ("bob.smith", "reviewer")]


@pytest.mark.parametrize("username", ["Alice", "al", "../root", "a/b", "9lives", "alice smith", "", "x" * 33, "alice\n"])
def test_unsafe_usernames_are_refused(store, username):
    store.password_hasher = FAST_HASHER
    with pytest.raises(ValueError, match="^username:"):
        store.add_account(username, "reviewer", PASSWORD)


def test_bad_roles_and_short_passwords_are_refused(store):
    with pytest.raises(ValueError, match="^role:"):
        store.add_account("carol", "root", PASSWORD)
    with pytest.raises(ValueError, match="^password:"):
        store.add_account("carol", "reviewer", "short")


def test_a_disabled_account_cannot_log_in(settings, store):
    store.password_hasher = FAST_HASHER
    account = store.add_account("dave", "reviewer", PASSWORD)
    disabled = json.dumps({**dataclasses.asdict(account), "disabled": True}).encode()
    object_store.put_bytes(object_store.s3_client(settings.s3), settings.s3.curated_bucket, account.key, disabled)
    assert store.verify_password("dave", PASSWORD) is None


def test_a_hash_with_old_parameters_is_replaced_at_login(settings, store):
    store.password_hasher = FAST_HASHER
    old = store.add_account("erin", "reviewer", PASSWORD).password_hash
    current = ReviewStore(settings)  # argon2's defaults: the old hash needs a rehash
    assert current.password_hasher.check_needs_rehash(old)
    assert current.verify_password("erin", PASSWORD) is not None
    new = current.get_account("erin").password_hash
    assert new != old and not current.password_hasher.check_needs_rehash(new)
    assert current.verify_password("erin", PASSWORD) is not None and current.verify_password("erin", "wrong one!!!!") is None


def test_a_local_root_keeps_the_same_record(tmp_path, settings):
    local = ReviewStore(settings, root=tmp_path)
    local.password_hasher = FAST_HASHER
    v = local.add_verdict(_verdict("c1-f0", "alice", "confirmed", 1))
    assert (tmp_path / v.key).is_file() and ReviewStore(settings, root=tmp_path).verdicts() == [v]
    local.add_account("frank", "admin", PASSWORD)
    with pytest.raises(ValueError, match="already exists"):
        local.add_account("frank", "admin", PASSWORD)
    assert local.verify_password("frank", PASSWORD).role == "admin"


def _cli_env(monkeypatch, settings) -> None:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.setenv(ENV_PREFIX + "S3__ENDPOINT_URL", settings.s3.endpoint_url)
    monkeypatch.setenv(ENV_PREFIX + "S3__CURATED_BUCKET", settings.s3.curated_bucket)


def test_users_add_and_list_from_the_command_line(settings, monkeypatch, capsys):
    _cli_env(monkeypatch, settings)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["users", "add", "grace", "--role", "lead", "--password-stdin"]) == cli.EXIT_OK
    assert ReviewStore(settings).verify_password("grace", PASSWORD).role == "lead"

    # The prompt asks twice; a mismatch adds nothing.
    answers = iter(["first password!", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert cli.main(["users", "add", "heidi", "--role", "reviewer"]) == cli.EXIT_ERROR
    assert "password: the two entries differ" in capsys.readouterr().err
    assert ReviewStore(settings).get_account("heidi") is None

    assert cli.main(["users", "list"]) == cli.EXIT_OK
    listed = capsys.readouterr().out.split()
    assert listed[:2] == ["grace", "lead"] and PASSWORD not in " ".join(listed)
    with pytest.raises(SystemExit):  # the password is never an argument
        cli.main(["users", "add", "ivan", "--role", "reviewer", "--password", PASSWORD])
