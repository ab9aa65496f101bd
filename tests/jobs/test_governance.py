"""The governance report: counts from the marts (calls, consents, inferences made and withheld by
role and rule, audit completeness) and from the operations records (erasures, retention logs),
never an id or a word."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest
from factories import curated_objects, make_call_tables, write_local

from pipeline.jobs.governance import governance_report, render_text
from pipeline.jobs.marts import build_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.storage import object_store
from pipeline.storage.keys import erasure_folder, retention_log_key

CALLS = {"g1": "2024-05-01", "g2": "2024-05-02", "g3": "2024-05-09"}


@pytest.fixture
def marts(settings, tmp_path):
    root = tmp_path / "curated"
    for n, (call_id, day) in enumerate(CALLS.items()):
        write_local(root, curated_objects(make_call_tables(call_id, day, duration_s=60.0, seed=n, video=n == 0), call_id, day))
    gate_committed_calls(settings, root)
    return build_marts(settings, root, tmp_path / "marts.duckdb").path


def _put_json(settings, key: str, data) -> None:
    client = object_store.s3_client(settings.s3)
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    object_store.put_bytes(client, settings.s3.curated_bucket, key, body, "application/json")


def test_the_report_counts_decisions_consents_completeness_erasures_and_deletions(settings, marts):
    ops = settings.s3.ops_prefix
    done = f"{erasure_folder(ops)}done/"
    _put_json(settings, f"{done}r1.json", {"request_id": "r1", "target": "call", "calls": ["d1"], "completed_at": "2024-05-03T10:00:00+00:00",
                                           "latency_s": 2 * 86400, "within_deadline": True, "removed": {"raw_media": 2, "tables": 11}})
    _put_json(settings, f"{done}r2.json", {"request_id": "r2", "target": "subject", "calls": ["d2", "d3"], "completed_at": None,
                                           "latency_s": None, "within_deadline": None, "removed": {"raw_media": 1}})
    _put_json(settings, f"{done}r3.json", {"request_id": "r3", "target": "call", "calls": ["d4"], "completed_at": "2024-06-20T10:00:00+00:00",
                                           "latency_s": 86400, "within_deadline": True, "removed": {"raw_media": 1}})
    lines = [{"data_kind": "raw_media", "action": "delete"}, {"data_kind": "utterance_text", "action": "rewrite"},
             {"data_kind": "raw_media", "action": "delete"}]
    stamp = datetime(2024, 5, 2, 4, tzinfo=timezone.utc)
    _put_json(settings, retention_log_key(ops, stamp), "\n".join(json.dumps(x) for x in lines).encode())

    report = governance_report(settings, date(2024, 5, 1), date(2024, 5, 7), marts_path=marts)
    assert report.calls == 2 and report.call_minutes == pytest.approx(2.0)
    assert report.consents["text_affect"] == {"consented": 2, "refused": 0}
    assert report.agent_inferences_made() == 0
    withheld = {(r["role"], r["inference"]): r for r in report.inferences if not r["performed"]}
    assert withheld[("agent", "voice_arousal")]["policy_rule"] == "agent-no-affect"
    assert withheld[("agent", "voice_arousal")]["calls"] == 2
    assert report.affect_values == report.affect_values_audited > 0 and report.audit_completeness == 1.0
    assert report.erasures["completed"] == 1 and report.erasures["open"] == 1
    assert report.erasures["latency_days_max"] == 2.0 and report.erasures["removed"] == {"raw_media": 2, "tables": 11}
    assert report.retention_deletions == {"raw_media delete": 2, "utterance_text rewrite": 1}

    text = render_text(report)
    assert "audit completeness" in text and "100.0%" in text and "agent-no-affect" in text
    for call_id in (*CALLS, "d1", "d2"):
        assert call_id not in text and call_id not in json.dumps(report.to_dict())


def test_the_cli_prints_json_and_refuses_a_backwards_range(settings, marts, tmp_path):
    config = tmp_path / "callaffect.toml"
    config.write_text(f'[s3]\nendpoint_url = "{settings.s3.endpoint_url}"\nraw_bucket = "{settings.s3.raw_bucket}"\n'
                      f'curated_bucket = "{settings.s3.curated_bucket}"\n')
    cli = [sys.executable, "-m", "pipeline.cli", "governance", "report", "--config", str(config), "--marts", str(marts)]
    proc = subprocess.run([*cli, "--from", "2024-05-01", "--to", "2024-05-31", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["calls"] == len(CALLS)
    day = date(2024, 5, 2)
    proc = subprocess.run([*cli, "--from", str(day), "--to", str(day - timedelta(days=1))], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "before --from" in proc.stderr
