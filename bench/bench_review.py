"""Speed of the QA review app over marts the size of a busy month: JSON with the data and marts
build times and, per page, p50/p95/p99/max latency in ms (with the process's CPU ms per request,
which other load on the machine does not inflate), and peak RSS. The issue's target: the queue
and the call view under 300 ms at p95.

    .venv/bin/python bench/bench_review.py [--calls 1000] [--flags-per-call 10] [--requests 200]
        [--verdicts 300] [--gate-sample 20] [--seed 0] [--workdir DIR] [--profile N]

bench/review_data.py builds the data (calls, flags, verdicts, the quality gate, the marts) in a
process of its own, so the app here runs with a heap like a served app's. Pages are requested in
process through Starlette's TestClient (no network), signed in as a reviewer; the first request
to each page (connections, templates, the review index) is reported apart. ``--profile N`` then
profiles N more requests per page with cProfile and prints the costliest functions to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import platform
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import duckdb
import numpy as np

from pipeline.review.app import create_app
from pipeline.settings import load_settings
from pipeline.storage.curated import CuratedStore
from pipeline.storage.reviews import ReviewStore

REVIEW_DATA = Path(__file__).resolve().with_name("review_data.py")
REVIEWER = "bench.reviewer"
PASSWORD = "bench password, not a secret"
TARGET_P95_MS = 300.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_data(work: Path, args: argparse.Namespace) -> dict:
    """bench/review_data.py into ``work``, in a child process; its JSON report."""
    command = [sys.executable, str(REVIEW_DATA), "--out", str(work), "--calls", str(args.calls),
               "--flags-per-call", str(args.flags_per_call), "--verdicts", str(args.verdicts),
               "--gate-sample", str(args.gate_sample), "--seed", str(args.seed)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"review_data.py failed with exit code {done.returncode}")
    return json.loads(done.stdout)


# --- the requests -------------------------------------------------------------------------------


def _sign_in(client) -> None:
    client.get("/login")  # sets the CSRF cookie the form echoes in a header
    answer = client.post("/login", data={"username": REVIEWER, "password": PASSWORD},
                         headers={"x-csrftoken": client.cookies["csrftoken"]})
    if answer.status_code != 303 or answer.headers.get("location") != "/queue":
        raise SystemExit(f"sign-in failed: {answer.status_code}")


def request_plan(marts: Path, n: int, page_size: int, seed: int) -> dict[str, list[str]]:
    """Per page, the ``n`` paths to request: the queue's first page, a page 90% of the way down,
    the unreviewed flags scoring 0.7 or more, and the call view of random flagged calls."""
    with duckdb.connect(str(marts), read_only=True) as con:
        flags = con.execute("select call_id, flag_id from mart_qa_flags order by flag_id").fetchall()
    deep = max(1, int(0.9 * -(-len(flags) // page_size)))
    rng = random.Random(seed)
    return {
        "queue_first_page": ["/queue"] * n,
        "queue_deep_page": [f"/queue?page={deep}"] * n,
        "queue_filtered": ["/queue?min_score=0.7&status=unreviewed"] * n,
        "call_view": [f"/calls/{c}?flag={quote(f)}" for c, f in (rng.choice(flags) for _ in range(n))],
        # The plot the call view loads as an image; random calls, so mostly not yet cached.
        "call_plot": [f"/calls/{c}/plot.svg" for c, _ in (rng.choice(flags) for _ in range(n))],
    }


def _get(client, path: str) -> tuple[float, float]:
    """One request's wall time and this process's CPU time over it, in ms. The CPU time is what
    the request cost whatever else the machine runs; a page that is not a full answer stops the bench."""
    started, cpu_started = time.perf_counter(), time.process_time()
    answer = client.get(path)
    elapsed, cpu = (time.perf_counter() - started) * 1000.0, (time.process_time() - cpu_started) * 1000.0
    wanted = "<svg" if path.endswith("plot.svg") else 'class="utt' if path.startswith("/calls/") else 'class="flag"'
    if answer.status_code != 200 or wanted not in answer.text:
        raise SystemExit(f"GET {path}: {answer.status_code}, {wanted!r} {'found' if wanted in answer.text else 'missing'}")
    return elapsed, cpu


def _latency(first: tuple[float, float], timed: list[tuple[float, float]]) -> dict:
    wall, cpu = np.array(timed).T
    p50, p95, p99 = np.percentile(wall, [50, 95, 99])
    cpu_p50, cpu_p95 = np.percentile(cpu, [50, 95])
    return {"first_ms": round(first[0], 1), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
            "p99_ms": round(p99, 1), "max_ms": round(wall.max(), 1),
            "cpu_p50_ms": round(cpu_p50, 1), "cpu_p95_ms": round(cpu_p95, 1), "requests": len(timed)}


def time_pages(app, plan: dict[str, list[str]]) -> dict[str, dict]:
    from starlette.testclient import TestClient

    results = {}
    with TestClient(app, follow_redirects=False) as client:
        _sign_in(client)
        for page, paths in plan.items():
            first = _get(client, paths[0])  # pays for connections, templates and the review index
            results[page] = {"path": {"call_view": "/calls/<id>?flag=<flag>", "call_plot": "/calls/<id>/plot.svg"}.get(page, paths[0]),
                             **_latency(first, [_get(client, p) for p in paths])}
    return results


class _ThreadProfiles:
    """cProfile in every thread started while active: TestClient runs the app on its own event
    loop thread and the sync routes on worker threads, which a profiler of this thread misses."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def _start(self, frame, event, arg) -> None:
        profile = cProfile.Profile()
        self.profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    def __enter__(self) -> "_ThreadProfiles":
        threading.setprofile(self._start)
        return self

    def __exit__(self, *exc) -> None:
        threading.setprofile(None)

    def top(self, n: int) -> str:
        """The app's own functions by cumulative time, then every function by its own time, less
        the event loop's and the idle workers' waits."""
        out = io.StringIO()
        stats = pstats.Stats(*self.profiles, stream=out)
        stats.sort_stats("cumulative").print_stats(r"/pipeline/", n)
        stats.sort_stats("tottime").print_stats(r"^(?!.*(select\.epoll|_thread\.lock))", n)
        return out.getvalue()


def profile_pages(app, plan: dict[str, list[str]], n: int) -> None:
    """Profile ``n`` requests per page, each page in a fresh client (so fresh threads), signed in
    with the cookies of a client outside the profile (the sign-in's argon2 stays out of it)."""
    from starlette.testclient import TestClient

    with TestClient(app, follow_redirects=False) as signed_in:
        _sign_in(signed_in)
        cookies = dict(signed_in.cookies)
    for page, paths in plan.items():
        with _ThreadProfiles() as profiles, TestClient(app, follow_redirects=False, cookies=cookies) as client:
            for path in paths[:n]:
                _get(client, path)
        print(f"=== {page}: {min(n, len(paths))} requests ===\n{profiles.top(25)}", file=sys.stderr)


# --- the run ------------------------------------------------------------------------------------


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--flags-per-call", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--verdicts", type=int, default=300)
    parser.add_argument("--gate-sample", type=int, default=20, help="calls left for the quality gate to check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="a new or empty directory to keep the curated root and marts in "
                                          "(default: a temporary directory, removed after)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="then profile N requests per page (stderr)")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    return args


def main() -> int:
    args = _arguments()
    load_before = os.getloadavg()[0]  # other work on the machine inflates wall times, not CPU times
    with contextlib.ExitStack() as stack:
        work = Path(args.workdir) if args.workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        built = build_data(work, args)
        root, marts = work / "curated", work / "marts.duckdb"
        settings = load_settings()
        # A key of the bench's own: never the operator's ~/.config one.
        settings = dataclasses.replace(settings, review=dataclasses.replace(settings.review, secret_key_path=str(work / "secret")))
        store = ReviewStore(settings, root=str(root))
        store.add_account(REVIEWER, "reviewer", PASSWORD)
        app = create_app(settings, marts, store, CuratedStore(settings, root), secure_cookies=False)
        plan = request_plan(marts, args.requests, settings.review.page_size, args.seed)
        pages = time_pages(app, plan)
        if args.profile:
            profile_pages(app, plan, args.profile)
    report = {
        "bench": "review_app",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
        "calls": built.pop("calls"),
        "flags": built.pop("flags"),
        "verdicts": built.pop("verdicts"),
        "build": built,
        "pages": pages,
        "target_p95_ms": TARGET_P95_MS,
        "over_target": sorted(p for p, r in pages.items() if r["p95_ms"] > TARGET_P95_MS),
        "peak_rss_mb_app": round(_peak_rss_mb(), 1),
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
