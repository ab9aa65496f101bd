"""No personal data in any log line: a real night over two generated calls whose customers say
their name, date of birth, phone number, e-mail address and card number, and whose metadata
carries a subject id and an agent id.

One call goes through ``callaffect -v batch`` (its own process and Ray cluster, at DEBUG), the
other through the nightly DAG with ``dag.test()`` (real analysis on this session's Ray cluster),
which also gates both, builds the marts, the trend report and the run report; then the
retention DAG applies every limit. What is read: the CLI's stdout and stderr, everything this
process wrote to its file descriptors and its loggers (Airflow's task logs included), the files
under Airflow's log folder, and every file under both Ray sessions' ``logs/`` (workers, raylet,
GCS). None may hold an identifier (as said and as digits), the subject or agent id, the name,
or words only the calls' transcripts contain.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow_env import use_settings

from pipeline.clock import utc_now
from pipeline.devtools.demo import run_dag, settings_env
from pipeline.devtools.evaluation import number_to_words
from pipeline.devtools.synth.calls import generate_call
from pipeline.settings import ENV_PREFIX, RetentionSettings
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore, table_key

ROOT = Path(__file__).resolve().parents[2]
DAY = (utc_now().date() - timedelta(days=1)).isoformat()  # a day old: retention's 0-day limits apply
# seed 0: internet_outage, the customer is "Daniel Cooper"; seed 3: delivery_delay, "Grace Miller".
CALLS = {"priv-cli": (0, "subj-7QX4KZ2M", "agt-zq81vw"), "priv-dag": (3, "subj-P9W3RT8L", "agt-mk55tr")}


@pytest.fixture
def planted(tmp_path) -> dict[str, dict]:
    """The two calls on disk, and what was planted in each."""
    found = {}
    for call_id, (seed, subject_id, agent_id) in CALLS.items():
        call = generate_call(tmp_path / "raw", call_id, seed=seed, n_speakers=2, pii=True, truth_dir=tmp_path / "truth")
        metadata = json.loads(call.metadata_path.read_text())
        metadata.update(subject_id=subject_id, agent_id=agent_id, queue="billing")
        call.metadata_path.write_text(json.dumps(metadata))
        [name] = {m.group(1) for t in call.turns for m in [re.search(r"under ([A-Z][a-z]+ [A-Z][a-z]+)", t.text)] if m}
        found[call_id] = {"call": call, "subject_id": subject_id, "agent_id": agent_id, "name": name,
                          "identifiers": json.loads(call.pii_path.read_text())["identifiers"]}
    return found


def _upload(settings, call) -> None:
    client = object_store.s3_client(settings.s3)
    for path in (call.audio_path, call.metadata_path):
        object_store.upload_file(client, path, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}{DAY}/{path.name}")


def _words(text: str) -> str:
    """Lower-case words separated by single spaces: how a phrase is looked for in any log format."""
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def _digits_pattern(digits: str) -> re.Pattern:
    # The digits in order, with at most two separators between them ("4539 1488-...", "4,5,3").
    return re.compile(r"(?<!\d)" + r"[\s\-.,/()]{0,2}".join(digits) + r"(?!\d)")


# Words the program itself may print (its source and docs, less the generator's scripts), and
# short words: a transcript word outside these can only come from a call.
def _program_vocabulary() -> set[str]:
    synth = ROOT / "pipeline" / "devtools" / "synth"
    texts = [p.read_text(errors="ignore") for p in (ROOT / "pipeline").rglob("*.py") if synth not in p.parents]
    texts += [(ROOT / "README.md").read_text()]
    return {w.lower() for t in texts for w in re.findall(r"[A-Za-z]+", t)}


def _transcript(settings, call_id: str) -> str:
    data = CuratedStore(settings).read_bytes(table_key("", "utterances", DAY, call_id))
    return "\n".join(t for t in pq.read_table(pa.BufferReader(data)).column("text").to_pylist() if t)


def _distinctive_words(transcript: str, vocabulary: set[str], n: int = 5) -> list[str]:
    words = set(re.findall(r"[a-z]+", transcript.lower()))
    rare = sorted((w for w in words if len(w) >= 6 and w not in vocabulary), key=lambda w: (-len(w), w))
    assert len(rare) >= n, f"only {len(rare)} transcript words outside the program's vocabulary"
    return rare[:n]


def _needles(info: dict, distinctive: list[str]) -> dict[str, re.Pattern]:
    """What must not be in any log line, by what it is (the label never shows the value)."""
    needles = {
        "subject id": re.compile(re.escape(info["subject_id"]), re.I),
        "agent id": re.compile(re.escape(info["agent_id"]), re.I),
        "customer name": re.compile(r"\b" + r"\W+".join(info["name"].lower().split()) + r"\b", re.I),
    }
    for i in info["identifiers"]:
        kind, value = i["kind"], i["value"]
        if kind in ("card", "phone"):
            needles[f"{kind} (digits)"] = _digits_pattern(value)
            spoken = " ".join(number_to_words(int(d)) for d in value[:8])  # 8 digits said in a row
            needles[f"{kind} (as said)"] = re.compile(re.escape(spoken))
        elif kind == "email":
            needles["e-mail address"] = re.compile(re.escape(value), re.I)
            needles["e-mail (as said)"] = re.compile(re.escape(_words(value.split("@")[0].replace(".", " dot "))))
        elif kind == "dob":
            needles["date of birth"] = re.compile(re.escape(value))
        needles[f"{kind} (the customer's words)"] = re.compile(re.escape(_words(i["text"])))
    for word in distinctive:
        needles[f"transcript word #{distinctive.index(word)}"] = re.compile(rf"\b{word}\b", re.I)
    return needles


def _leaks(sources: dict[str, str], needles: dict[str, re.Pattern]) -> list[str]:
    found = []
    for where, text in sources.items():
        lowered_words = _words(text)
        for label, pattern in needles.items():
            # Spoken phrases are matched on the words alone, whatever the punctuation around them.
            haystack = lowered_words if "(as said)" in label or "words)" in label else text
            if pattern.search(haystack):
                found.append(f"{label} in {where}")
    return found


def _files_under(folder: Path) -> dict[str, str]:
    return {str(p): p.read_text(errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()}


def _ray_logs_of_this_session() -> Path:
    import ray

    context = ray.get_runtime_context()
    return Path(context.get_temp_dir()) / context.get_session_name() / "logs"


def test_no_personal_data_in_any_log_line(settings, ray_local, airflow_home, planted, monkeypatch, capfd, caplog):
    caplog.set_level("DEBUG")
    calls = {call_id: info["call"] for call_id, info in planted.items()}

    # 1. The CLI at DEBUG, its own Ray cluster under a temp dir of its own (short: Ray's socket paths).
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-priv-", dir="/tmp"))
    try:
        _upload(settings, calls["priv-cli"])
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) and k != "RAY_ADDRESS"}
        env.update(settings_env(settings), RAY_TMPDIR=str(ray_tmp))
        cli = subprocess.run([sys.executable, "-m", "pipeline.cli", "-v", "batch"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr[-3000:]
        cli_ray_logs = _files_under(ray_tmp / "ray")
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    # 2. The nightly DAG, in this process, on this session's Ray cluster: the second call, and a
    # copy of it whose metadata is refused for a subject id holding the name (the quarantine
    # reason is logged: it must name the field, not echo the value).
    _upload(settings, calls["priv-dag"])
    dag_info = planted["priv-dag"]
    client = object_store.s3_client(settings.s3)
    bad = f"{settings.s3.raw_prefix}{DAY}/priv-badmeta"
    object_store.upload_file(client, calls["priv-dag"].audio_path, settings.s3.raw_bucket, f"{bad}.wav")
    object_store.put_bytes(client, settings.s3.raw_bucket, f"{bad}.json",
                           json.dumps({"subject_id": f"{dag_info['subject_id']} {dag_info['name']}"}).encode())
    use_settings(monkeypatch, settings)
    nightly = run_dag("callaffect_nightly")
    assert nightly.state == "success"
    store = CuratedStore(settings)
    assert {c: store.read_manifest(DAY, c).loadable for c in CALLS} == {"priv-cli": True, "priv-dag": True}
    refused = store.read_manifest(DAY, "priv-badmeta")
    assert refused.status == "quarantined" and refused.reason.startswith("metadata subject_id")
    vocabulary = _program_vocabulary()
    transcripts = {c: _transcript(settings, c) for c in CALLS}
    distinctive = {c: _distinctive_words(transcripts[c], vocabulary) for c in CALLS}
    needles = {c: _needles(info, distinctive[c]) for c, info in planted.items()}
    # The matching finds each needle where it is known to be: what was said, the values planted,
    # the metadata, and the transcript as the pipeline wrote it (the name, the rare words).
    for call_id, info in planted.items():
        control = {"what was said": "\n".join(t.text for t in info["call"].turns),
                   "what was planted": json.dumps(info["identifiers"]) + info["call"].metadata_path.read_text(),
                   "the transcript": transcripts[call_id]}
        found = {leak.split(" in ")[0] for leak in _leaks(control, needles[call_id])}
        assert found == set(needles[call_id]), set(needles[call_id]) - found

    # 3. Retention with every limit at 0: each kind of data goes (and is logged) today.
    zero = RetentionSettings(raw_max_age_days=0, snippet_max_age_days=0, utterance_text_max_age_days=0,
                             affect_window_max_age_days=0, aggregate_max_age_days=0)
    use_settings(monkeypatch, dataclasses.replace(settings, retention=zero))
    retention = run_dag("callaffect_retention")
    assert retention.state == "success" and store.read_manifest(DAY, "priv-dag") is None

    out, err = capfd.readouterr()
    sources = {
        "the CLI's stdout": cli.stdout, "the CLI's stderr": cli.stderr,
        "this process's stdout": out, "this process's stderr": err, "this process's log records": caplog.text,
        **{f"Ray log {p} (CLI's cluster)": t for p, t in cli_ray_logs.items()},
        **{f"Ray log {p}": t for p, t in _files_under(_ray_logs_of_this_session()).items()},
        **{f"Airflow log {p}": t for p, t in _files_under(airflow_home / "logs").items()},
    }
    # The capture is not empty: the CLI's progress, logs of the Ray workers that ran the analysis,
    # Airflow's task lines; and call ids (pseudonymous) are found where they are logged.
    assert "[1/1] priv-cli ok" in cli.stderr
    assert any("/logs/worker-" in p for p in cli_ray_logs) and any("/logs/python-core-worker-" in p and t for p, t in cli_ray_logs.items())
    assert "end task task_id=analyze_batch" in caplog.text and "retention aggregates" in caplog.text
    assert "priv-badmeta" in caplog.text + out  # its quarantine was logged
    assert any(p.startswith("Ray log") and "CLI's" not in p for p in sources)

    leaks = [leak for call_id in CALLS for leak in _leaks(sources, needles[call_id])]
    assert leaks == [], "personal data in the logs:\n" + "\n".join(leaks)
