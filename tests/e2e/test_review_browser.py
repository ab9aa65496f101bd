"""The reviewer's path in a real headless browser (Debian's chromium, driven by Playwright), on
calls analysed by the real pipeline: sign in, open the queue, open the top flag, play the
snippet (it loads and seeks), give a verdict, see the status change; after a marts rebuild the
verdict is in mart_flag_precision. Screenshots go to test-artifacts/review/."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from pipeline.review.plots import ROLE_COLOURS
from pipeline.devtools.synth.calls import generate_call
from pipeline.jobs.batch import run_batch
from pipeline.jobs.marts import build_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.review.app import create_app
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore
from pipeline.storage.reviews import ReviewStore

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "review"
CHROMIUM = "/usr/bin/chromium"
# Chromium's own background traffic is refused on a closed network: turn it off.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
PASSWORD = "a long demo password"
DAY = "2024-05-02"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, local_s3):
    """Two generated frustrated calls through the real batch, gate and marts on the local stack."""
    import dataclasses

    from pipeline.settings import MartsSettings, RaySettings, ReviewSettings, S3Settings, Settings

    tmp = tmp_path_factory.mktemp("browser")
    s3 = S3Settings(endpoint_url=local_s3.endpoint_url, raw_bucket="raw-browser", curated_bucket="curated-browser")
    client = object_store.s3_client(s3)
    for bucket in (s3.raw_bucket, s3.curated_bucket):
        object_store.ensure_bucket(client, bucket)
    settings = dataclasses.replace(Settings(), s3=s3, ray=RaySettings(local_num_cpus=2),
                                   marts=MartsSettings(duckdb_path=str(tmp / "marts.duckdb")),
                                   review=ReviewSettings(secret_key_path=str(tmp / "secret")))
    for n in range(2):
        call = generate_call(tmp / "raw", f"browser-{n}", seed=10 + n, n_speakers=2, frustrated=True)
        object_store.upload_file(client, call.audio_path, s3.raw_bucket, f"{s3.raw_prefix}{DAY}/{call.audio_path.name}")
    report = run_batch(settings)
    assert len(report.ok) == 2, report
    gate_committed_calls(settings)
    build_marts(settings)
    ReviewStore(settings).add_account("reviewer1", "reviewer", PASSWORD)
    return settings


@pytest.fixture(scope="module")
def server(analysed):
    settings = analysed
    app = create_app(settings, settings.marts.duckdb_path, ReviewStore(settings), CuratedStore(settings), secure_cookies=False)
    port = _free_port()
    runner = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", app
    runner.should_exit = True
    thread.join(timeout=10)


def test_a_reviewer_walks_from_sign_in_to_a_verdict(server, analysed):
    server, app = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{server}/queue")
        expect(page).to_have_url(f"{server}/login")  # anonymous: sent to sign in
        page.fill("input[name=username]", "reviewer1")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{server}/queue")
        rows = page.locator("tr.flag")
        expect(rows.first).to_be_visible()
        page.screenshot(path=str(SHOTS / "queue.png"), full_page=True)

        rows.first.locator("a.open").click()
        expect(page.locator("h1")).to_contain_text("Call browser-")
        expect(page.locator("li.utt.flagged").first).to_be_visible()
        page.wait_for_function("document.querySelector('.plot img').naturalWidth > 0", timeout=20_000)
        # The reviewer sees the customer's affect only: the agent's colour is not in the plot.
        src = page.locator(".plot img").get_attribute("src")
        plot = page.request.get(src if src.startswith("http") else server + src).text()
        assert ROLE_COLOURS["customer"] in plot and ROLE_COLOURS["agent"] not in plot
        audio = page.locator("audio#snippet")
        page.wait_for_function("document.querySelector('audio#snippet').readyState >= 1", timeout=20_000)
        assert audio.evaluate("a => a.duration") > 5
        page.locator("li.utt.flagged").first.click()  # seeks the snippet to that line
        page.wait_for_function("document.querySelector('audio#snippet').currentTime > 0", timeout=10_000)
        page.screenshot(path=str(SHOTS / "call.png"), full_page=True)

        page.click("button[value=confirmed]")
        expect(page.locator("#status")).to_have_text("confirmed")
        page.screenshot(path=str(SHOTS / "verdict.png"), full_page=True)
        browser.close()

    build_marts(analysed)  # swapped in under the running app, which reads the new file
    [week] = app.state.marts.rows("select sum(flags_reviewed) as reviewed, max(precision) as precision from mart_flag_precision")
    assert week == {"reviewed": 1, "precision": 1.0}
