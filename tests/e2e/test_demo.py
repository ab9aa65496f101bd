"""``make demo`` end to end: real S3 endpoint, real analysis on Ray, the nightly DAG, the marts.

The demo runs in its own process (``callaffect demo``, i.e. run_demo) as ``make demo``
does: Airflow fixes its configuration at first import and the demo brings its own Airflow home,
S3 endpoint and Ray cluster, which must not meet this session's.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

CALL = "synth-000-000"
VIDEO = "video-000"  # agent, customer and a silent observer on camera
BAD = {"empty", "truncated", "not_media"}


def test_demo_runs_one_call_and_bad_inputs_end_to_end(tmp_path):
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--workdir", str(workdir), "--n-calls", "1"],
        capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]

    # Landing through the queue: the two good recordings (their sidecars are there) are announced;
    # the bad inputs have no sidecar and wait for the nightly listing.
    landing = re.search(r"(\d+) queue message\(s\); register success: 2 recording\(s\) announced \(([^)]*)\)", out)
    assert landing and landing.group(2) == f"{CALL}, {VIDEO}" and int(landing.group(1)) >= 5
    # What a user reads: calls processed, quarantined with reasons, speakers, flags, the marts.
    assert re.search(r"Calls processed: 2 loaded into the marts, \d quarantined", out)
    assert re.search(rf"  {CALL}: \d+ s, 2 speakers: SPEAKER_\d+ \((agent|customer)", out)
    assert re.search(rf"  {VIDEO}: \d+ s, 2 speakers: SPEAKER_\d+ \((agent|customer)", out)
    linked = re.findall(r"face track \d+ \(\d+ s on screen\): SPEAKER_\d+ \((agent|customer)\), link confidence 0\.\d\d", out)
    assert sorted(linked) == ["agent", "customer"]
    assert len(re.findall(r"face track \d+ \(\d+ s on screen\): not linked to any speaker", out)) == 1
    for name in BAD:
        assert re.search(rf"^  {name}: \S.*$", out, re.MULTILINE), f"no quarantine reason for {name}"
    assert re.search(rf"^  {CALL}  SPEAKER_\d+ \(customer\) +[\d.]+- +[\d.]+ s  score 0\.\d\d  confidence", out, re.MULTILINE)
    marts = workdir.resolve() / "marts" / "callaffect.duckdb"
    assert f"DuckDB marts: {marts}" in out
    assert "from mart_qa_flags" in out and "score_rank" in out  # the sample query and its result

    with duckdb.connect(str(marts), read_only=True) as con:
        calls = con.execute("select call_id, num_speakers, has_video from dim_calls order by call_id").fetchall()
        assert calls == [(CALL, 2, False), (VIDEO, 2, True)]
        status = dict(con.execute("select call_id, status from fct_call_status").fetchall())
        assert status[CALL] == status[VIDEO] == "ok" and all(status[b] == "quarantined" for b in BAD)
        flags = con.execute("select call_id, role, score, confidence from mart_qa_flags").fetchall()
        assert flags and all(c in (CALL, VIDEO) and r == "customer" and 0 <= s <= 1 and 0 <= k <= 1 for c, r, s, k in flags)
        faces = con.execute("select count(*), count(speaker) from fct_face_tracks where call_id = ?", [VIDEO]).fetchone()
        assert faces == (3, 2)
        face_windows = con.execute("select count(*) from fct_speaker_affect where face_valence is not null").fetchone()[0]
        assert face_windows > 0
        affect = con.execute("select min(valence), max(valence), min(arousal), max(arousal) from fct_speaker_affect").fetchone()
        assert all(-1 <= v <= 1 for v in affect)
        # Lawful by default: nothing is inferred about an agent, anywhere.
        for table in ("fct_speaker_affect", "fct_face_affect", "mart_speaker_affect_timeline"):
            assert con.execute(f"select distinct role from {table}").fetchall() == [("customer",)], table
        assert con.execute("select count(text_valence) from fct_utterances where role <> 'customer'").fetchone() == (0,)
    made = re.search(r"Emotion inferences \(callaffect governance report\): made: (.*); withheld: (.*)$", out, re.MULTILINE)
    assert made and "agent" not in made.group(1) and "customer" in made.group(1) and "agent" in made.group(2)
    values = re.search(r"Audit completeness: (\d+) of (\d+) affect values have the audit row of their inference \(100\.0%\)", out)
    assert values and values.group(1) == values.group(2) and int(values.group(1)) > 0

    # It stopped what it started: the S3 endpoint it printed is gone.
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)", out).group(1))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    # It ends by printing how to review the flags: the serve command on a copy of the curated
    # bucket (the S3 endpoint is gone) and demo logins that work there.
    serve = re.search(r"callaffect serve --marts (\S+) --curated-root (\S+) --insecure-cookies", out)
    assert serve and serve.group(1) == str(marts)
    from pipeline.settings import Settings
    from pipeline.storage.curated import CuratedStore
    from pipeline.storage.reviews import ReviewStore

    root = serve.group(2)
    _assert_no_agent_affect_in_curated(Path(root))
    assert CuratedStore(Settings(), root).read_manifest(*_date_and_id(con_path=marts, call_id=CALL)) is not None
    logins = dict(re.findall(r"^    (demo-[a-z]+) / (\S+)$", out, re.MULTILINE))
    assert set(logins) == {"demo-reviewer", "demo-lead"}
    store = ReviewStore(Settings(), root=root)
    assert {u: store.verify_password(u, pw).role for u, pw in logins.items()} == {"demo-reviewer": "reviewer", "demo-lead": "lead"}


def _assert_no_agent_affect_in_curated(root: Path) -> None:
    """Every curated affect file holds customers only, and no coaching table was written."""
    for table in ("speaker_affect", "face_affect"):
        roles = {r for f in root.glob(f"{table}/*/*/*.parquet") for r in pq.read_table(f).column("role").to_pylist()}
        assert roles == {"customer"}, (table, roles)
    assert all(pq.read_table(f).num_rows == 0 for f in root.glob("coaching_affect/*/*/*.parquet"))
    for f in root.glob("utterances/*/*/*.parquet"):
        assert all(u["text_valence"] is None for u in pq.read_table(f).to_pylist() if u["role"] != "customer")
    reports = list(root.glob("reports/*/index.html"))
    assert reports and all("Inferences made and withheld" in r.read_text() for r in reports)


def _date_and_id(con_path, call_id: str) -> tuple[str, str]:
    with duckdb.connect(str(con_path), read_only=True) as con:
        return str(con.execute("select call_date from dim_calls where call_id = ?", [call_id]).fetchone()[0]), call_id
