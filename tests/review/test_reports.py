"""The review app's trend reports (pipeline.review.reports) over real marts and a local curated
root: leads list them newest first and open one as the page the job wrote; reviewers may not;
a day that is not a day is a 400, a day with no report a 404."""

from __future__ import annotations

import dataclasses
import re

import pytest
from factories import curated_objects, make_call_tables, write_local
from starlette.testclient import TestClient

from pipeline.jobs.marts import build_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.jobs.trend_report import SECTION_TITLES, build_trend_report
from pipeline.review.app import create_app
from pipeline.settings import ReviewSettings, Settings
from pipeline.storage.curated import CuratedStore
from pipeline.storage.reviews import ReviewStore

PASSWORD = "correct horse battery"
REPORT_DAYS = ("2024-05-02", "2024-05-10", "2024-05-03")


@pytest.fixture(scope="module")
def app_data(tmp_path_factory):
    """Two gated calls, their marts, a report for each of REPORT_DAYS, a reviewer and a lead."""
    tmp = tmp_path_factory.mktemp("reports")
    root = tmp / "curated"
    for call_id, day in (("call-a", "2024-05-01"), ("call-b", "2024-05-02")):
        write_local(root, curated_objects(make_call_tables(call_id, day, seed=len(call_id)), call_id, day))
    settings = dataclasses.replace(Settings(), review=ReviewSettings(secret_key_path=str(tmp / "secret")))
    gate_committed_calls(settings, curated_root=root)
    marts = tmp / "marts.duckdb"
    build_marts(settings, out_path=marts, curated_root=root)
    for day in REPORT_DAYS:
        build_trend_report(settings, day=day, marts_path=marts, curated_root=root)
    store = ReviewStore(settings, root=str(root))
    for role in ("reviewer", "lead"):
        store.add_account(f"{role}1", role, PASSWORD)
    return settings, root, marts


@pytest.fixture
def client(app_data):
    settings, root, marts = app_data
    app = create_app(settings, marts, ReviewStore(settings, root=str(root)), CuratedStore(settings, root),
                     secure_cookies=False)
    with TestClient(app, follow_redirects=False) as c:
        yield c


def _sign_in(client, username: str) -> None:
    if "csrftoken" not in client.cookies:
        client.get("/login")
    answer = client.post("/login", data={"username": username, "password": PASSWORD},
                         headers={"x-csrftoken": client.cookies["csrftoken"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/queue"


def test_a_lead_sees_the_reports_newest_first_and_opens_one(client, app_data):
    _sign_in(client, "lead1")
    assert 'href="/reports"' in client.get("/queue").text  # the nav link
    listing = client.get("/reports")
    assert listing.status_code == 200
    linked = re.findall(r'href="(/reports/[^"]+)"', listing.text)
    assert linked == [f"/reports/{day}" for day in sorted(REPORT_DAYS, reverse=True)]

    page = client.get("/reports/2024-05-03")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    _, root, _ = app_data
    assert page.content == (root / "reports/2024-05-03/index.html").read_bytes()  # as the job wrote it
    assert all(title in page.text for title in SECTION_TITLES)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "private, no-store"


def test_a_reviewer_may_not_and_an_anonymous_request_signs_in_first(client):
    for path in ("/reports", "/reports/2024-05-03"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", path
    _sign_in(client, "reviewer1")
    assert 'href="/reports"' not in client.get("/queue").text
    for path in ("/reports", "/reports/2024-05-03"):
        assert client.get(path).status_code == 403, path


def test_a_bad_day_is_a_400_and_a_day_without_a_report_a_404(client):
    _sign_in(client, "lead1")
    for day in ("2024-5-3", "20240503", "2024-02-30", "%2E%2E", "2024-05-03%0A", "x" * 500):
        answer = client.get(f"/reports/{day}")
        assert answer.status_code == 400, (day, answer.status_code)
    assert client.get("/reports/..%2F..%2Fetc%2Fpasswd").status_code == 404  # no route takes a "/"
    missing = client.get("/reports/2024-05-04")
    assert missing.status_code == 404 and "no trend report for 2024-05-04" in missing.text
