"""The fault suite: an operator's bad night, injected on the real local stack.

Hostile metadata and keys (fixed cases and property-based fuzzing), two batches at once, a
killed batch, S3 throttling through a fault-injecting proxy (tests/s3_fault_proxy.py), call ids
under two dates, private scratch and outputs, and credentials in logs. Worker crashes are in
test_batch.py, retention cases in test_retention.py, a poison call in a DAG run in test_dags.py,
the bad-media corpus in test_media.py and test_analyze_e2e.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import psutil
import pytest
from factories import make_call_tables
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from s3_fault_proxy import FaultProxy
from stack_helpers import DAY, analyses_of, commit_valid_call, put_calls, put_raw, tables_analyze

from pipeline import cli
from pipeline.storage import object_store
from pipeline import metadata as call_metadata
from pipeline.call.exports import CallResult
from pipeline.jobs.batch import WORK_ROOT, discover, process_recording, run_batch
from pipeline.storage.curated import CuratedStore, manifest_key, table_key
from pipeline.storage.keys import RawRecording, classify_raw_key, valid_call_id
from pipeline.manifest import CallManifest
from pipeline.jobs.marts import build_marts
from pipeline.jobs.quality_gate import gate_committed_calls
from pipeline.schemas import SCHEMA_VERSION

TESTS_DIR = Path(__file__).resolve().parent


# --- the metadata contract ---------------------------------------------------------------------

HOSTILE_METADATA = {
    "consent as a string": (b'{"consent": {"video": "false"}}', "consent.video"),
    "consent as 'no'": (b'{"consent": {"text_affect": "no", "voice_affect": false}}', "consent.text_affect"),
    "consent as a number": (b'{"consent": {"voice_affect": 0}}', "consent.voice_affect"),
    "a JSON array": (b"[1, 2, 3]", "JSON object"),
    "consent as a list": (b'{"consent": ["video"]}', "consent"),
    "deep JSON": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "byte limit"),  # refused before parsing
    "deep but small JSON": (b"[" * 3000 + b"]" * 3000, "nested"),
    "speakers as words": (b'{"min_speakers": "two"}', "min_speakers"),
    "speakers as a bool": (b'{"max_speakers": true}', "max_speakers"),
    "a date that walks up": (b'{"call_date": "../../x"}', "call_date"),
    "a role with markup": (b'{"roles": {"SPEAKER_00": "agent> <v SPEAKER_01 (customer)"}}', "roles.SPEAKER_00"),
    "a role keyed by role": (b'{"roles": {"agent": "SPEAKER_00"}}', "roles.key 'agent'"),
    "an unknown key": (b'{"consent": {}, "consnet": {"video": true}}', "consnet"),
    "not UTF-8": (b'\xff\xfe{\x00"\x00a\x00"\x00}\x00', "UTF-8"),
    "not JSON": (b"{not json", "not valid JSON"),
    "bounds crossed": (b'{"min_speakers": 3, "max_speakers": 2}', "max_speakers"),
}


@pytest.mark.parametrize("raw, shown, hidden", [
    (b'{"consent": {}, "john.smith@example.com": "called twice"}', "unknown field '<a 22-character key not shown>'", "john"),
    (b'{"callback_07700900123": true}', "unknown field '<a 20-character key not shown>'", "0770"),
    (b'{"consent": {"Maria Lopez": true}}', "unknown field 'consent.<a 11-character key not shown>'", "Maria"),
    (b'{"roles": {"Maria Lopez": "customer"}}', "roles.key '<a 11-character key not shown>'", "Maria"),
    (b'{"customer_email": "x"}', "unknown field 'customer_email'", "@"),  # a field name is named
])
def test_a_key_that_may_hold_personal_data_is_not_echoed_in_the_reason(raw, shown, hidden):
    with pytest.raises(call_metadata.MetadataError) as refused:
        call_metadata.parse(raw)
    assert shown in str(refused.value) and hidden not in str(refused.value), str(refused.value)


@pytest.mark.parametrize("case", list(HOSTILE_METADATA))
def test_hostile_metadata_is_refused_with_a_reason_naming_the_field(case):
    raw, names = HOSTILE_METADATA[case]
    with pytest.raises(call_metadata.MetadataError) as refused:
        call_metadata.parse(raw)
    reason = str(refused.value)
    assert names in reason and "\n" not in reason, reason


def test_good_metadata_with_a_byte_order_mark_is_read_as_written():
    parsed = call_metadata.parse(
        b'\xef\xbb\xbf{"consent": {"video": true, "voice_affect": false}, "channels": {"0": "agent", "1": "customer"},'
        b' "roles": {"SPEAKER_01": "customer"}, "min_speakers": 2, "max_speakers": 2, "call_date": "2024-05-02"}'
    )
    assert parsed.consent == call_metadata.Consent(text_affect=True, voice_affect=False, video=True)
    assert parsed.channels == {"0": "agent", "1": "customer"} and parsed.roles == {"SPEAKER_01": "customer"}
    assert (parsed.min_speakers, parsed.max_speakers, parsed.call_date) == (2, 2, "2024-05-02")
    assert call_metadata.parse(b"{}").consent.video is False  # no consent, no faces


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
_contract_like = st.fixed_dictionaries({}, optional={
    "consent": st.dictionaries(st.sampled_from(["video", "text_affect", "voice_affect", "face"]), _json, max_size=3),
    "min_speakers": _json, "max_speakers": _json, "call_date": _json, "call_id": _json,
    "roles": st.dictionaries(st.text(max_size=12), _json, max_size=3),
    "channels": st.dictionaries(st.sampled_from(["0", "1", "2"]), _json, max_size=2),
})


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _contract_like))
def test_any_json_is_either_valid_metadata_or_refused_with_one_line(data):
    try:
        parsed = call_metadata.parse(json.dumps(data).encode())
    except call_metadata.MetadataError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # Accepted: every consent is a real boolean, never a truthy string.
    assert isinstance(data, dict)
    for key in ("text_affect", "voice_affect", "video"):
        assert type(getattr(parsed.consent, key)) is bool
        if key in data.get("consent", {}):
            assert data["consent"][key] is getattr(parsed.consent, key)


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_either_valid_metadata_or_refused(raw):
    try:
        call_metadata.parse(raw)
    except call_metadata.MetadataError as exc:
        assert "\n" not in str(exc)


_key_part = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_key_part, st.sampled_from(["2024-05-02", "..", ".", "", "-x.wav", "a b.wav", "c.json"])),
                min_size=1, max_size=4))
def test_any_raw_key_is_a_recording_with_a_safe_id_or_has_a_reason(parts):
    key = "recordings/" + "/".join(parts)
    found = classify_raw_key(key, "recordings/")
    if isinstance(found, RawRecording):
        assert valid_call_id(found.call_id) and ".." not in found.call_id.split("/")
        curated = table_key("", "calls", found.call_date, found.call_id)
        assert "/../" not in f"/{curated}/" and curated.count("/") == 3
    else:
        assert found.kind in ("sidecar", "ignored") and found.reason


@pytest.mark.parametrize("consent", [{"video": "false"}, {"video": "no"}, {"text_affect": "false"}, {"voice_affect": "0"}])
def test_consent_given_as_a_string_quarantines_the_call_and_nothing_is_inferred(settings, consent):
    put_calls(settings, ["consent-1"])
    put_raw(settings, f"{settings.s3.raw_prefix}{DAY}/consent-1.json", json.dumps({"consent": consent}).encode())
    [rec] = discover(settings).pending

    manifest = process_recording(rec, settings, tables_analyze).manifest

    assert manifest.status == "quarantined" and manifest.table_keys == {}
    assert manifest.reason == f"metadata consent.{next(iter(consent))}: Input should be a valid boolean"
    assert analyses_of(settings) == []  # the analysis never ran


# --- the CLI contract --------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["consent as a string", "a JSON array", "deep but small JSON", "speakers as words",
                                  "a date that walks up", "a role with markup"])
def test_analyze_exits_2_before_any_analysis_on_bad_metadata(case, tmp_path, monkeypatch, capsys):
    import pipeline.call.analyze

    def must_not_run(*args, **kwargs):
        raise AssertionError("analysis ran on invalid metadata")

    monkeypatch.setattr(pipeline.call.analyze, "analyze_call", must_not_run)
    media, meta, out = tmp_path / "call-7.wav", tmp_path / "call-7.json", tmp_path / "out"
    media.write_bytes(b"RIFF")
    meta.write_bytes(HOSTILE_METADATA[case][0])

    code = cli.main(["analyze", str(media), "--metadata", str(meta), "--out", str(out)])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_QUARANTINED
    assert len(err) == 1 and err[0].startswith("callaffect: call-7: quarantined: metadata"), err
    manifest = CallManifest.from_json((out / "manifest.json").read_text())
    assert manifest.status == "quarantined" and manifest.reason.startswith("metadata")
    assert stat.S_IMODE((out / "manifest.json").stat().st_mode) == 0o640


def test_analyze_refuses_a_hostile_call_id_in_one_line(tmp_path, capsys):
    media = tmp_path / "x.wav"
    media.write_bytes(b"RIFF")
    code = cli.main(["analyze", str(media), "--call-id", "../../etc", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_ERROR and len(err) == 1 and "--call-id" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", [["quality-gate"], ["marts", "build"], ["batch"]])
def test_jobs_report_an_unreachable_s3_in_one_line(command, tmp_path, monkeypatch, capsys):
    from pipeline.devtools.s3server import free_port

    monkeypatch.setenv("CALLAFFECT_S3__ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CALLAFFECT_MARTS__DUCKDB_PATH", str(tmp_path / "m.duckdb"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no point retrying a port nobody listens on
    code = cli.main(command)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_ERROR
    assert len(err) == 1 and err[0].startswith("callaffect: error:") and "Traceback" not in err[0], err


def test_quality_gate_exits_3_when_a_call_fails_it(settings, monkeypatch, capsys):
    from airflow_env import use_settings
    from factories import set_values

    use_settings(monkeypatch, settings)
    commit_valid_call(settings, "fine-2")
    bad = make_call_tables("bad-2", DAY, duration_s=60.0, seed=2)
    bad["speaker_affect"] = set_values(bad["speaker_affect"], "valence", {0: 4.0})
    put_calls(settings, ["bad-2"])
    rec = classify_raw_key(f"{settings.s3.raw_prefix}{DAY}/bad-2.wav", settings.s3.raw_prefix)
    process_recording(rec, settings, lambda media, call_id, **kw: CallResult(
        CallManifest(call_id=call_id, status="ok", duration_s=60.0, schema_version=SCHEMA_VERSION), bad))

    code = cli.main(["quality-gate"])

    captured = capsys.readouterr()
    assert code == cli.EXIT_PARTIAL
    assert json.loads(captured.out)["checked"] == 2
    assert captured.err.strip() == "callaffect: 1 call(s) failed the quality gate and are quarantined"
    assert cli.main(["quality-gate"]) == cli.EXIT_OK  # nothing new to check


def test_verbose_logs_carry_no_credentials(settings, tmp_path):
    secret_id, secret_key, token = "AKIAFAULTSUITE0EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY", "IQoJb3JpZ2luX2VjEFAKE-SESSION-TOKEN-0123456789"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": secret_id, "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_SESSION_TOKEN": token,
           "CALLAFFECT_S3__ENDPOINT_URL": settings.s3.endpoint_url, "CALLAFFECT_S3__RAW_BUCKET": settings.s3.raw_bucket,
           "CALLAFFECT_S3__CURATED_BUCKET": settings.s3.curated_bucket,
           "CALLAFFECT_MARTS__DUCKDB_PATH": str(tmp_path / "m.duckdb")}
    commit_valid_call(settings, "cred-1")  # the gate then reads and writes objects: signed requests to log
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "-v", "quality-gate"], env=env,
                         capture_output=True, text=True, timeout=300)
    logs = run.stdout + run.stderr
    assert run.returncode == 0, logs[-2000:]
    assert "DEBUG" in logs  # -v was on
    for secret in (secret_id, secret_key, token):
        assert secret not in logs


def test_the_log_filter_masks_what_a_botocore_debug_line_carries():
    import logging

    from pipeline.log_redaction import CredentialFilter

    line = ("Sending http request: <AWSPreparedRequest headers={'X-Amz-Security-Token': b'IQoJb3JpZ2luX2VjEFAKE',"
            " 'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20241204/us-east-1/s3/aws4_request,"
            " SignedHeaders=host, Signature=0f3a9c'}> params {'aws_secret_access_key': 'wJalrXUtnFEMIK7MDENGbPxRfiCYKEY'}")
    record = logging.LogRecord("botocore.endpoint", logging.DEBUG, __file__, 1, "%s", (line,), None)
    CredentialFilter(["my-very-own-secret"]).filter(record)
    masked = record.getMessage()
    for secret in ("IQoJb3JpZ2luX2VjEFAKE", "AKIAIOSFODNN7EXAMPLE", "0f3a9c", "wJalrXUtnFEMIK7MDENGbPxRfiCYKEY"):
        assert secret not in masked, masked
    assert "X-Amz-Security-Token': b'***" in masked
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", ("my-very-own-secret",), None)
    CredentialFilter(["my-very-own-secret"]).filter(record)
    assert record.getMessage() == "key ***"


# --- keys under the raw prefix ---------------------------------------------------------------


def test_every_raw_object_is_processed_quarantined_a_sidecar_or_ignored_with_a_reason(settings, ray_local):
    prefix = settings.s3.raw_prefix
    odd = {
        f"{prefix}{DAY}/with space.wav": "valid call id",
        f"{prefix}{DAY}/ünïcode.wav": "valid call id",
        f"{prefix}{DAY}/$(rm -rf x);.wav": "valid call id",
        f"{prefix}{DAY}/-leading-dash.wav": "valid call id",
        f"{prefix}{DAY}/sub/deeper.wav": "folder levels",
        f"{prefix}{DAY}/../escape.wav": "'..'",
        f"{prefix}not-a-date/x.wav": "not a date",
        f"{prefix}{DAY}/.hidden.wav": "hidden",
        f"{prefix}{DAY}/orphan.json": "metadata without a recording",
    }
    for key in odd:
        put_raw(settings, key)
    put_calls(settings, ["fine-1"])
    put_raw(settings, f"{prefix}{DAY}/twice.wav")
    put_raw(settings, f"{prefix}{DAY}/twice.mp3")

    report = run_batch(settings, analyze_fn=tables_analyze)

    assert report.ok == ["fine-1"]
    assert report.quarantined == {"twice": "2 media files for one call (twice.mp3, twice.wav): keep one and reprocess"}
    assert set(report.ignored) == set(odd)
    for key, words in odd.items():
        assert words in report.ignored[key], (key, report.ignored[key])
    # Listed where ops look, one object per key, and a re-run changes nothing.
    client = object_store.s3_client(settings.s3)
    listed = [json.loads(object_store.get_bytes(client, settings.s3.curated_bucket, o.key))
              for o in object_store.list_objects(client, settings.s3.curated_bucket, f"{settings.s3.ops_prefix}ignored/")]
    assert {item["key"] for item in listed} == set(odd)
    again = run_batch(settings, analyze_fn=tables_analyze)
    assert (again.ok, again.quarantined, again.failed) == ([], {}, {})
    # The quarantined call's second file is now listed too, until an operator removes one.
    assert set(again.ignored) == set(odd) | {f"{prefix}{DAY}/twice.wav"}


def test_a_call_id_under_two_dates_is_quarantined_at_discovery_and_the_marts_load_it_once(settings, ray_local):
    put_calls(settings, ["dup-1", "solo-1"], day="2024-05-01")
    first = run_batch(settings, analyze_fn=tables_analyze)
    assert sorted(first.ok) == ["dup-1", "solo-1"]
    put_calls(settings, ["dup-1"], day="2024-05-03")  # the same call id, a later night

    second = run_batch(settings, analyze_fn=tables_analyze)

    assert second.ok == [] and second.quarantined == {"dup-1": "call id dup-1 is already used by the recording of 2024-05-01"}
    gate_committed_calls(settings)
    report = build_marts(settings)
    assert report.calls_loaded == 2
    with duckdb.connect(report.path, read_only=True) as con:
        assert con.execute("select call_id, call_date::varchar from dim_calls order by 1").fetchall() == [
            ("dup-1", "2024-05-01"), ("solo-1", "2024-05-01")]


def test_marts_load_a_call_id_committed_under_two_dates_once_instead_of_failing(settings):
    """Committed before discovery rejected such calls: the build stays up for everyone."""
    for day in ("2024-05-01", "2024-05-04"):
        commit_valid_call(settings, "twin-1", day)
    commit_valid_call(settings, "other-1")
    gate_committed_calls(settings)

    report = build_marts(settings)

    assert report.calls_loaded == 2
    with duckdb.connect(report.path, read_only=True) as con:
        status = con.execute("select call_date::varchar, loaded, reason from fct_call_status where call_id = 'twin-1' order by 1").fetchall()
    assert status == [("2024-05-01", True, None), ("2024-05-04", False, "call id twin-1 already loaded from 2024-05-01")]


# --- concurrency -------------------------------------------------------------------------------


def test_two_batches_at_once_commit_every_call_exactly_once(settings, ray_local, monkeypatch):
    calls = [f"conc-{i}" for i in range(6)]
    put_calls(settings, calls)
    monkeypatch.setenv("CALLAFFECT_TEST_ANALYZE_S", "0.4")
    ray_local.get([])  # the cluster is up before both threads race to use it
    reports = [None, None]

    def batch(i: int) -> None:
        reports[i] = run_batch(settings, analyze_fn=tables_analyze)

    threads = [threading.Thread(target=batch, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    a, b = reports
    assert a.quarantined == b.quarantined == {} and a.failed == b.failed == {}
    assert sorted(a.ok + b.ok) == calls and not set(a.ok) & set(b.ok)
    assert sorted(analyses_of(settings)) == calls  # each analysed once: the other batch skipped it
    assert set(a.busy) | set(a.skipped) | set(b.busy) | set(b.skipped) <= set(calls)
    assert {m.call_id: m.status for _, m in CuratedStore(settings).manifests()} == dict.fromkeys(calls, "ok")
    client = object_store.s3_client(settings.s3)
    assert not list(object_store.list_objects(client, settings.s3.curated_bucket, f"{settings.s3.ops_prefix}leases/"))


def test_scratch_is_private_and_outputs_are_not_world_readable(settings, tmp_path):
    put_calls(settings, ["perm-1"])
    seen = {}

    def inspecting_analyze(media_path, call_id, **kwargs):
        folder = Path(media_path).parent
        seen.update(root=stat.S_IMODE(WORK_ROOT.stat().st_mode), folder=stat.S_IMODE(folder.stat().st_mode),
                    media=stat.S_IMODE(Path(media_path).stat().st_mode), path=folder)
        return tables_analyze(media_path, call_id, **kwargs)

    [rec] = discover(settings).pending
    assert process_recording(rec, settings, inspecting_analyze).manifest.status == "ok"
    assert (seen["root"], seen["folder"], seen["media"]) == (0o700, 0o700, 0o600)
    assert not seen["path"].exists()  # removed on exit
    gate_committed_calls(settings)
    marts = Path(build_marts(settings).path)
    assert stat.S_IMODE(marts.stat().st_mode) == 0o640


def test_a_killed_batch_leaves_no_ray_process_and_its_calls_commit_once_on_retry(settings, ray_local, tmp_path):
    """The batch process is SIGKILLed mid-run: its Ray cluster (listening on 127.0.0.1 only) dies
    with it, the leases it held are taken over, and the retry commits every call exactly once."""
    calls = [f"kill-{i}" for i in range(4)]
    put_calls(settings, calls)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(TESTS_DIR.parent), os.environ.get("PYTHONPATH", "")]),
           "CALLAFFECT_TEST_ANALYZE_S": "30", "CALLAFFECT_S3__ENDPOINT_URL": settings.s3.endpoint_url,
           "CALLAFFECT_S3__RAW_BUCKET": settings.s3.raw_bucket, "CALLAFFECT_S3__CURATED_BUCKET": settings.s3.curated_bucket,
           "CALLAFFECT_RAY__LOCAL_NUM_CPUS": "2"}
    env.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen(
        [sys.executable, "-c", "from pipeline.jobs.batch import run_batch; from pipeline.settings import load_settings;"
         " from stack_helpers import tables_analyze; run_batch(load_settings(), analyze_fn=tables_analyze)"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    client = object_store.s3_client(settings.s3)
    leases = f"{settings.s3.ops_prefix}leases/"
    deadline = time.monotonic() + 120
    while not list(object_store.list_objects(client, settings.s3.curated_bucket, leases)):
        assert driver.poll() is None and time.monotonic() < deadline, "the batch never started a call"
        time.sleep(0.5)
    tree = psutil.Process(driver.pid).children(recursive=True)
    listening = [c.laddr.ip for p in tree for c in _tcp_listeners(p)]
    assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening

    driver.send_signal(signal.SIGKILL)
    driver.wait()
    gone, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, [(p.pid, p.name()) for p in alive]
    assert analyses_of(settings) == []  # killed before any call finished

    retry = run_batch(settings, analyze_fn=tables_analyze)

    assert sorted(retry.ok) == calls and retry.busy == {} and retry.failed == {}
    assert sorted(analyses_of(settings)) == calls
    assert not list(object_store.list_objects(client, settings.s3.curated_bucket, leases))


def _tcp_listeners(proc: psutil.Process) -> list:
    try:
        return [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


# --- S3 throttling -----------------------------------------------------------------------------


def test_dropped_connections_and_lost_answers_still_commit_each_call_once(settings, ray_local, local_s3):
    """Connections dropped before S3 sees the request, and after it acted (the client retries
    a write that already happened, including the conditional lease write)."""
    calls = [f"drop-{i}" for i in range(4)]
    with FaultProxy(local_s3.endpoint_url, drop_rate=0.05, drop_after_rate=0.05, seed=11) as proxy:
        faulty = dataclasses.replace(settings, s3=dataclasses.replace(settings.s3, endpoint_url=proxy.endpoint_url))
        put_calls(faulty, calls)
        report = run_batch(faulty, analyze_fn=tables_analyze)
        counts = dict(proxy.counts)
    assert sorted(report.ok) == calls and report.failed == {} and report.busy == {}
    assert sorted(analyses_of(settings)) == calls
    assert counts["drop"] + counts["drop_after"] > 0
    client = object_store.s3_client(settings.s3)
    assert [o.key for o in object_store.list_objects(client, settings.s3.curated_bucket, "_manifests/")] == sorted(
        manifest_key("", DAY, c) for c in calls)
    assert not list(object_store.list_objects(client, settings.s3.curated_bucket, f"{settings.s3.ops_prefix}leases/"))
