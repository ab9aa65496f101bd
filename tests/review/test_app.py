"""The review app over a real marts file and a real review store (a local curated root):
sign-in, roles on every route, CSRF on every form, hostile parameters, durable verdicts."""

from __future__ import annotations

import dataclasses
import re

import pytest
from factories import curated_objects, make_call_tables, write_local
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from starlette.testclient import TestClient

from pipeline.jobs.marts import build_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.review.app import create_app
from pipeline.settings import ReviewSettings
from pipeline.storage.curated import CuratedStore
from pipeline.storage.reviews import ReviewStore

CALLS = {"call-a": "2024-05-01", "call-b": "2024-05-02"}
PASSWORD = "correct horse battery"
ROLES = ("reviewer", "lead", "admin")


@pytest.fixture(scope="module")
def review_data(tmp_path_factory):
    """Two committed, gated calls under a local curated root, their marts, and one account per role."""
    from pipeline.settings import Settings

    tmp = tmp_path_factory.mktemp("review")
    root = tmp / "curated"
    for call_id, day in CALLS.items():
        write_local(root, curated_objects(make_call_tables(call_id, day, seed=len(call_id)), call_id, day))
    settings = dataclasses.replace(Settings(), review=ReviewSettings(secret_key_path=str(tmp / "secret")))
    gate_committed_calls(settings, curated_root=root)
    marts = tmp / "marts.duckdb"
    build_marts(settings, out_path=marts, curated_root=root)
    store = ReviewStore(settings, root=str(root))
    for role in ROLES:
        store.add_account(f"{role}1", role, PASSWORD)
    return settings, root, marts


def _app(review_data):
    settings, root, marts = review_data
    return create_app(settings, marts, ReviewStore(settings, root=str(root)), CuratedStore(settings, root), secure_cookies=False)


@pytest.fixture
def client(review_data):
    with TestClient(_app(review_data), follow_redirects=False) as c:
        yield c


def _csrf(client) -> dict:
    if "csrftoken" not in client.cookies:
        client.get("/login")
    return {"x-csrftoken": client.cookies["csrftoken"]}


def _sign_in(client, username: str) -> None:
    answer = client.post("/login", data={"username": username, "password": PASSWORD}, headers=_csrf(client))
    assert answer.status_code == 303 and answer.headers["location"] == "/queue", answer.text


def _a_flag(client) -> tuple[str, str]:
    page = client.get("/queue").text
    call_id, flag_id = re.search(r'href="/calls/([^?"]+)\?flag=([^"]+)"', page).groups()
    from urllib.parse import unquote

    return call_id, unquote(flag_id)


def _routes(app) -> list[tuple[str, str]]:
    return [(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods if r.path not in ("/login", "/logout")]


def _fill(path: str, call_id: str, flag_id: str) -> str:
    return path.replace("{call_id}", call_id).replace("{flag_id}", flag_id)


def test_every_route_rejects_an_anonymous_request(client):
    _sign_in(client, "reviewer1")
    call_id, flag_id = _a_flag(client)
    client.cookies.delete("callaffect_session")
    routes = _routes(client.app)
    assert len(routes) >= 8
    for method, path in routes:
        answer = client.request(method, _fill(path, call_id, flag_id), headers=_csrf(client),
                                data={"verdict": "confirmed", "reviewer": "reviewer1", "utterance_id": "0", "text": "x"})
        assert answer.status_code == 303 and answer.headers["location"] == "/login", (method, path, answer.status_code)


def test_role_boundaries_hold(client):
    _sign_in(client, "reviewer1")
    call_id, flag_id = _a_flag(client)
    assert client.get("/admin/users").status_code == 403
    assigned = client.post(f"/flags/{flag_id}/assign", data={"reviewer": "reviewer1"}, headers=_csrf(client))
    assert assigned.status_code == 403
    _sign_in(client, "lead1")
    assert client.get("/admin/users").status_code == 403
    assert client.post(f"/flags/{flag_id}/assign", data={"reviewer": "reviewer1"}, headers=_csrf(client)).status_code == 303
    _sign_in(client, "admin1")
    users = client.get("/admin/users")
    assert users.status_code == 200 and "reviewer1" in users.text and "argon2" not in users.text


def test_every_form_needs_the_csrf_token(client, review_data):
    _sign_in(client, "reviewer1")
    call_id, flag_id = _a_flag(client)
    for path, data in ((f"/flags/{flag_id}/verdict", {"verdict": "confirmed"}),
                       (f"/calls/{call_id}/notes", {"utterance_id": "0", "text": "hello"}),
                       ("/logout", {}), ("/login", {"username": "reviewer1", "password": PASSWORD})):
        for headers in ({}, {"x-csrftoken": "forged"}):
            assert client.post(path, data=data, headers=headers).status_code == 403, (path, headers)
    settings, root, _ = review_data
    assert not [v for v in ReviewStore(settings, root=str(root)).verdicts() if v.flag_id == flag_id and v.reviewer == "reviewer1"]


def test_wrong_passwords_are_refused_and_rate_limited(review_data):
    with TestClient(_app(review_data), follow_redirects=False) as client:
        answers = [client.post("/login", data={"username": "reviewer1", "password": "wrong password!"}, headers=_csrf(client))
                   for _ in range(7)]
    assert [a.status_code for a in answers[:5]] == [303] * 5
    assert all(a.headers["location"] == "/login?error=1" for a in answers[:5])
    assert answers[-1].status_code == 429


def test_a_verdict_shows_at_once_and_survives_a_restart_and_a_marts_rebuild(client, review_data):
    _sign_in(client, "reviewer1")
    call_id, flag_id = _a_flag(client)
    given = client.post(f"/flags/{flag_id}/verdict", data={"verdict": "dismissed", "comment": "polite"}, headers=_csrf(client))
    assert given.status_code == 303
    assert 'class="status status-dismissed">dismissed' in client.get(given.headers["location"]).text
    settings, root, marts = review_data
    with TestClient(_app(review_data), follow_redirects=False) as restarted:  # a new process's view
        _sign_in(restarted, "lead1")
        assert f'data-flag="{flag_id}"' in restarted.get("/queue?status=dismissed").text
    build_marts(settings, out_path=marts, curated_root=root)  # swapped in under the running app
    rows = client.app.state.marts.rows("select verdict, reviewer from fct_qa_verdicts where flag_id = ?", [flag_id])
    assert {"verdict": "dismissed", "reviewer": "reviewer1"} in rows
    assert client.get("/queue").status_code == 200  # still answering on the new file


def test_reviewers_notes_and_comments_are_kept_redacted(client, review_data):
    _sign_in(client, "reviewer1")
    call_id, flag_id = _a_flag(client)
    quoted = "customer Mrs Okafor read her card 4111 1111 1111 1111 aloud"
    assert client.post(f"/flags/{flag_id}/verdict", data={"verdict": "confirmed", "comment": quoted},
                       headers=_csrf(client)).status_code == 303
    assert client.post(f"/calls/{call_id}/notes", data={"utterance_id": "0", "text": quoted},
                       headers=_csrf(client)).status_code == 303
    settings, root, _ = review_data
    store = ReviewStore(settings, root=str(root))
    [verdict] = [v for v in store.verdicts() if v.flag_id == flag_id and v.verdict == "confirmed"]
    [note] = [n for n in store.notes_of_call(verdict.call_date, call_id) if "aloud" in n.text]
    assert verdict.comment == note.text == "customer Mrs [NAME] read her card [CARD_NUMBER] aloud"


def test_the_call_view_shows_the_flag_the_transcript_and_the_plot_and_logs_the_view(client, review_data):
    _sign_in(client, "reviewer1")
    call_id, flag_id = _a_flag(client)
    page = client.get(f"/calls/{call_id}", params={"flag": flag_id})
    assert page.status_code == 200
    assert 'class="utt flagged"' in page.text and "confidence" in page.text
    plot = client.get(f"/calls/{call_id}/plot.svg")
    assert plot.status_code == 200 and plot.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in plot.text and "valence (-1..1)" in plot.text and "time in the call (s)" in plot.text
    settings, root, _ = review_data
    from pipeline.clock import utc_now

    views = ReviewStore(settings, root=str(root)).views(utc_now().date().isoformat())
    assert any(v.user == "reviewer1" and v.call_id == call_id for v in views)


HOSTILE = st.one_of(
    st.sampled_from(["' or 1=1 --", "\"; drop table mart_qa_flags; --", "../../etc/passwd", "%00", "..%2F..%2F",
                     "-1", "1e309", "NaN", "99999999999999999999", "2024-13-45", "0000-00-00", "🙂", "\u202e", "x" * 5000]),
    st.text(max_size=40),
)
QUEUE_PARAMS = ("date_from", "date_to", "min_score", "min_confidence", "status", "rule_version", "agent_id", "queue",
                "trend", "mine", "page")


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(param=st.sampled_from(QUEUE_PARAMS), value=HOSTILE, path_value=HOSTILE)
def test_hostile_parameters_get_a_4xx_never_a_5xx(client, param, value, path_value):
    if "callaffect_session" not in client.cookies:
        _sign_in(client, "lead1")
    queue = client.get("/queue", params={param: value})
    assert queue.status_code in (200, 400), (param, value, queue.status_code)
    from urllib.parse import quote

    path_value = quote(path_value, safe="")  # as a client sends it: percent-encoded
    for path in (f"/calls/{path_value}", f"/calls/call-a/flags/{path_value}/snippet.ogg"):
        answer = client.get(path, params={"flag": value})
        assert 400 <= answer.status_code < 500 or answer.status_code == 200, (path, answer.status_code)
    verdict = client.post(f"/flags/{path_value}/verdict", data={"verdict": value, "comment": value}, headers=_csrf(client))
    assert 300 <= verdict.status_code < 500, (path_value, value, verdict.status_code)
