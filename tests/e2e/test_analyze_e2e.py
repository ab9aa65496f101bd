"""`callaffect analyze` end to end on real models: the CLI contract, quality on a generated
telephone call with known truth, and quarantine of unusable input."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from pyannote.core import Segment

from pipeline.devtools.evaluation import der_from_files, load_rttm, wer_from_files
from pipeline.call.analyze import STAGES
from pipeline.schemas import TABLES
from pipeline.devtools.synth.bad_inputs import write_bad_inputs
from pipeline.devtools.synth.calls import generate_call

CLI = [sys.executable, "-m", "pipeline.cli"]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    call = generate_call(root / "media", "tel20", seed=100, n_speakers=2, snr_db=20.0, telephone=True)
    out = root / "out"
    proc = subprocess.run([*CLI, "analyze", str(call.audio_path), "--out", str(out), "--call-id", "tel20"],
                          capture_output=True, text=True, timeout=600)
    return call, out, proc


def test_cli_writes_the_contracted_outputs(analysed):
    call, out, proc = analysed
    assert proc.returncode == 0, proc.stderr
    assert "diarization:" in proc.stderr and "transcription:" in proc.stderr  # progress is shown
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["reason"] is None
    assert len(manifest["sha256"]) == 64 and manifest["versions"]["transcription"].startswith("tiny.en")
    assert set(manifest["stage_seconds"]) >= {"decode", "speech_activity", "diarization", "transcription", "fusion"}
    # Every timed stage describes itself (pipeline.stages.contract): no row falls back to a guess.
    metrics = {m["stage"]: m for m in pq.read_table(out / "tables" / "stage_metrics.parquet").to_pylist()}
    assert set(metrics) == set(manifest["stage_seconds"]) and set(metrics) <= {s.name for s in STAGES}
    assert metrics["transcription"]["model_version"] == manifest["versions"]["transcription"]
    assert metrics["voice_features"]["backend"] == metrics["voice_affect"]["backend"] == "bs1770-pyin"  # the licence-clean default
    for name, schema in TABLES.items():
        table = pq.read_table(out / "tables" / f"{name}.parquet")
        assert table.schema.equals(schema, check_metadata=False), name
        assert table.num_rows == manifest["tables"][name]
    assert (out / "transcript.vtt").read_text().startswith("WEBVTT")


def test_quality_on_generated_telephone_call(analysed):
    call, out, _ = analysed
    der = der_from_files(call.rttm_path, out / "diarization.rttm", collar=0.25)
    wer = wer_from_files(call.stm_path, out / "transcript.vtt")
    assert der["der"] <= 0.10, der
    assert wer <= 0.35, wer
    hyp = next(iter(load_rttm(out / "diarization.rttm").values()))
    assert len(hyp.labels()) == 2


def test_roles_affect_and_flags_follow_the_truth(analysed):
    call, out, _ = analysed
    ref = next(iter(load_rttm(call.rttm_path).values()))
    turns = pq.read_table(out / "tables" / "speaker_turns.parquet").to_pylist()
    # Map each hypothesis speaker to the reference speaker it overlaps most.
    overlap: dict = {}
    for t in turns:
        cropped = ref.crop(Segment(t["start_s"], t["end_s"]))
        for label in cropped.labels():
            overlap.setdefault(t["speaker"], {}).setdefault(label, 0.0)
            overlap[t["speaker"]][label] += cropped.label_duration(label)
    truth_of = {spk: max(v, key=v.get) for spk, v in overlap.items()}
    roles = {t["speaker"]: t["role"] for t in turns}
    assert {truth_of[s]: r for s, r in roles.items()} == {"agent": "agent", "customer": "customer"}

    affect = pq.read_table(out / "tables" / "speaker_affect.parquet").to_pandas()
    assert affect["valence"].between(-1, 1).all() and affect["arousal"].between(-1, 1).all()
    assert affect["confidence"].between(0, 1).all()
    customer = affect[affect["role"] == "customer"]
    start, end = call.frustrated_span
    inside = customer[(customer.start_s < end) & (customer.end_s > start)]
    outside = customer[(customer.end_s <= start) | (customer.start_s >= end)]
    assert inside["valence"].mean() < outside["valence"].mean() - 0.2
    assert inside["arousal"].mean() > outside["arousal"].mean()

    flags = pq.read_table(out / "tables" / "qa_flags.parquet").to_pylist()
    assert flags, "the frustrated stretch was not flagged"
    assert all(f["role"] == "customer" for f in flags)
    assert any(f["start_s"] < end and f["end_s"] > start for f in flags)


def test_unusable_inputs_exit_2_with_reason_and_quarantined_manifest(tmp_path):
    bad = write_bad_inputs(tmp_path / "bad")
    expected = {"empty.wav": "empty file", "truncated.wav": "truncated", "not_media.mp3": "not readable as media",
                "silent.wav": "no speech"}
    for name, reason in expected.items():
        out = tmp_path / name
        proc = subprocess.run([*CLI, "analyze", str(bad[name]), "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, (name, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1]
        assert reason in last and "quarantined" in last
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "quarantined" and reason in manifest["reason"]
        assert not (out / "tables").exists()


@pytest.mark.parametrize("seed, stereo", [(0, False), (3, True)])
def test_planted_identifiers_never_reach_the_outputs(tmp_path, seed, stereo):
    from pipeline.call.analyze import analyze_call
    from pipeline.devtools.evaluation import find_leaks
    from pipeline.settings import Settings

    call = generate_call(tmp_path, f"pii{seed}", seed=seed, n_speakers=2, snr_db=20.0, stereo=stereo, pii=True)
    planted = json.loads(call.pii_path.read_text())["identifiers"]
    assert {p["kind"] for p in planted} == {"card", "phone", "email", "dob"}
    result = analyze_call(call.audio_path, call.call_id, settings=Settings())
    assert result.ok
    texts = [("vtt", result.vtt)] + [("utterances", u["text"]) for u in result.tables["utterances"].to_pylist()]
    assert find_leaks(texts, planted) == []
    audit = [a for a in result.tables["audit"].to_pylist() if a["inference"] == "pii_redaction"]
    assert audit and audit[0]["performed"]


def test_no_consent_no_inference_and_the_audit_says_why(analysed):
    from pipeline.call.analyze import analyze_call
    from pipeline.settings import Settings

    call, _, _ = analysed
    result = analyze_call(call.audio_path, "noconsent", settings=Settings(),
                          metadata={"consent": {"voice_affect": False, "text_affect": True}})
    affect = result.tables["speaker_affect"].to_pylist()
    assert affect and all(row["voice_arousal"] is None and "voice" not in row["modalities"] for row in affect)
    assert any(row["text_valence"] is not None for row in affect)
    audit = {(a["inference"], a["subject"]): a for a in result.tables["audit"].to_pylist()}
    voice = [a for (inference, _), a in audit.items() if inference == "voice_arousal"]
    assert voice and all(not a["performed"] and a["model"] is None for a in voice)
    assert [a["consent"] for a in voice if a["role"] == "customer"] == ["consent.voice_affect=false"]
    text = [a for (inference, _), a in audit.items() if inference == "text_valence"]
    assert {(a["role"], a["performed"], a["policy_rule"]) for a in text} == {
        ("customer", True, "customer-consent"), ("agent", False, "agent-no-affect")}


def test_no_emotion_is_inferred_about_the_agent_by_default(analysed):
    """The agent keeps conversation metrics only: no affect value in any table, and the audit
    names the rule that withheld each inference."""
    _, out, _ = analysed
    table = lambda name: pq.read_table(out / "tables" / f"{name}.parquet").to_pylist()  # noqa: E731
    assert {r["role"] for r in table("speaker_affect")} == {"customer"}
    assert table("coaching_affect") == []
    assert all(u["text_valence"] is None for u in table("utterances") if u["role"] == "agent")
    assert any(u["text_valence"] is not None for u in table("utterances") if u["role"] == "customer")
    assert {m["role"] for m in table("conversation_metrics")} == {"agent", "customer"}
    agent = [a for a in table("audit") if a["role"] == "agent" and a["inference"] in ("text_valence", "voice_arousal", "face_expression")]
    assert len(agent) == 3 and all(not a["performed"] and a["policy_rule"] == "agent-no-affect" and a["model"] is None for a in agent)


@pytest.mark.parametrize("call_jurisdiction, coached", [("US", True), ("DE", False)])
def test_agent_coaching_outside_the_eu_reaches_only_the_coaching_table(analysed, call_jurisdiction, coached):
    import dataclasses

    from pipeline.call.analyze import analyze_call
    from pipeline.settings import PolicySettings, Settings

    call, _, _ = analysed
    settings = dataclasses.replace(Settings(), policy=PolicySettings(jurisdiction="US", agent_coaching_jurisdictions=("US",)))
    metadata = {"jurisdiction": call_jurisdiction, "purposes": ["quality", "coaching"], "consent": {"agent_affect": True}}
    result = analyze_call(call.audio_path, "coached", settings=settings, metadata=metadata)
    assert result.ok, result.manifest.reason
    coaching = result.tables["coaching_affect"].to_pylist()
    assert {r["role"] for r in result.tables["speaker_affect"].to_pylist()} == {"customer"}
    assert all(u["text_valence"] is None for u in result.tables["utterances"].to_pylist() if u["role"] == "agent")
    agent = {a["inference"]: a for a in result.tables["audit"].to_pylist() if a["role"] == "agent"}
    if coached:
        assert coaching and {r["role"] for r in coaching} == {"agent"}
        assert all(r["face_valence"] is None for r in coaching)
        assert agent["voice_arousal"]["performed"] and agent["voice_arousal"]["policy_rule"] == "agent-coaching"
        assert not agent["face_expression"]["performed"]
    else:  # metadata can narrow what settings allow, never widen it
        assert coaching == [] and agent["voice_arousal"]["policy_rule"] == "agent-no-affect"
