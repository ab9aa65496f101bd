"""The pyannote diarization backend on a real (tiny, random-weight) pyannote.audio 4.x pipeline
that the tests build and save: real loading (local directory and the moto-served model store)
and real inference. Random weights: nothing here says anything about diarization quality."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
from pathlib import Path

import pytest
import torch
from model_scripts import load_model_script
from pyannote.audio.telemetry.metrics import is_metrics_enabled
from pyannote.core import Annotation

from pipeline.storage import object_store
from pipeline.storage.media import decode_audio
from pipeline.settings import DiarizationSettings, ModelStoreSettings, Settings
from pipeline.stages.audio import pyannote_diarizer as pd
from pipeline.devtools.synth.calls import generate_call
from pipeline.records import SpeakerHints

EXCERPT_S = 20.0  # both parties speak in it; keeps inference to seconds on 2 cores


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory) -> Path:
    return load_model_script("build_test_pyannote_pipeline").build_test_pipeline(tmp_path_factory.mktemp("pyannote") / "tiny-diarization")


@pytest.fixture(scope="session")
def call_audio(tmp_path_factory):
    call = generate_call(tmp_path_factory.mktemp("call"), "c", seed=1, n_speakers=2)
    audio = decode_audio(call.audio_path)
    return audio.samples[: int(EXCERPT_S * audio.sample_rate)], audio.sample_rate


def _settings(source: str, base: Settings | None = None, **diarization) -> Settings:
    base = base or Settings()
    return dataclasses.replace(
        base, diarization=DiarizationSettings(backend="pyannote", pyannote_pipeline=source, device="cpu", **diarization)
    )


@pytest.fixture
def no_network(monkeypatch):
    """Any hub download, or any connection off this machine, is recorded and refused."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"test: network access to {address} refused")
        return real_connect(sock, address)

    def refuse_download(*args, **kwargs):
        attempts.append(("hf_hub_download", args, kwargs.get("token")))
        raise RuntimeError("test: hub download attempted")

    import huggingface_hub
    import pyannote.audio.utils.hf_hub as pyannote_hf_hub

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse_download)
    monkeypatch.setattr(pyannote_hf_hub, "hf_hub_download", refuse_download)
    return attempts


def _check_turns(annotation: Annotation, duration: float) -> None:
    assert isinstance(annotation, Annotation) and len(annotation) > 0
    labels = [label for _, _, label in annotation.itertracks(yield_label=True)]
    first_seen = list(dict.fromkeys(labels))
    assert first_seen == [f"SPEAKER_{i:02d}" for i in range(len(first_seen))]
    extent = annotation.get_timeline().extent()
    assert 0.0 <= extent.start and extent.end <= duration + 1e-6


def test_local_pipeline_runs_offline_and_keeps_overlap(pipeline_dir, call_audio, tmp_path, monkeypatch, no_network):
    # A copy of its own, so that this test loads the pipeline afresh (loads are cached per path).
    source = shutil.copytree(pipeline_dir, tmp_path / "tiny-diarization")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("PYANNOTE_METRICS_ENABLED", "true")
    samples, sample_rate = call_audio
    settings = _settings(str(source))

    turns = pd.diarize_pyannote(samples, sample_rate, settings, SpeakerHints())

    _check_turns(turns, len(samples) / sample_rate)
    assert no_network == []
    assert not is_metrics_enabled() and os.environ["HF_HUB_OFFLINE"] == "1"
    # The random model marks two speakers at once; the backend keeps that overlap rather than
    # returning pyannote's exclusive (one speaker at a time) diarization.
    assert turns.get_overlap().duration() > 0
    assert pd.load_pipeline(settings) is pd.load_pipeline(settings)  # loaded once per process
    version = pd.model_version(settings)
    assert version.startswith("pyannote.audio==4.") and " pipeline=tiny-diarization@" in version


def test_speaker_hints_reach_the_pipeline(pipeline_dir, call_audio, monkeypatch):
    samples, sample_rate = call_audio
    settings = _settings(str(pipeline_dir), max_speakers=4)
    one = pd.diarize_pyannote(samples, sample_rate, settings, SpeakerHints(max_speakers=1))
    assert one.labels() == ["SPEAKER_00"]

    pipeline = pd.load_pipeline(settings)
    seen: list[dict] = []
    real_apply = pipeline.apply
    monkeypatch.setattr(pipeline, "apply", lambda file, **kw: seen.append(kw) or real_apply(file, **kw))
    short = samples[: 8 * sample_rate]
    pd.diarize_pyannote(short, sample_rate, settings, SpeakerHints(min_speakers=2, max_speakers=3))
    pd.diarize_pyannote(short, sample_rate, settings, SpeakerHints())
    pd.diarize_pyannote(short, sample_rate, settings, SpeakerHints(max_speakers=9))
    assert seen == [
        {"min_speakers": 2, "max_speakers": 3},
        {"max_speakers": 4},  # min only when > 1; no hint: the settings' cap
        {"max_speakers": 4},  # a hint never lifts the cap
    ]


def test_pipeline_loads_from_the_s3_model_store(pipeline_dir, call_audio, settings, tmp_path, monkeypatch, no_network):
    # boto3 looks for credentials on the EC2 metadata address before object_store.s3_client falls
    # back to the local endpoint's test keys; that lookup is not this backend's traffic.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = dataclasses.replace(settings, model_store=ModelStoreSettings(cache_dir=str(tmp_path / "cache")))
    client = object_store.s3_client(settings.s3)
    bucket = settings.s3.curated_bucket
    for path in pipeline_dir.rglob("*"):
        if path.is_file():
            object_store.upload_file(client, path, bucket, f"models/pyannote/tiny-v1/{path.relative_to(pipeline_dir)}")
    s3_settings = _settings(f"s3://{bucket}/models/pyannote/tiny-v1/", base=settings)
    samples, sample_rate = call_audio
    short = samples[: 10 * sample_rate]

    turns = pd.diarize_pyannote(short, sample_rate, s3_settings, SpeakerHints())

    _check_turns(turns, 10.0)
    assert no_network == []  # only the local S3 endpoint was reached
    assert (tmp_path / "cache").is_dir()
    # Same files, same fingerprint as the local copy: the version names the weights, not the path.
    s3_hash = pd.model_version(s3_settings).rsplit("@", 1)[1]
    assert pd.model_version(s3_settings).split(" pipeline=")[1].startswith("tiny-v1@")
    assert s3_hash == pd.model_version(_settings(str(pipeline_dir))).rsplit("@", 1)[1]


def _variant(pipeline_dir: Path, tmp_path: Path, config: str | None) -> Path:
    """The test pipeline with its config replaced (None: no config.yaml at all)."""
    target = tmp_path / "variant"
    shutil.copytree(pipeline_dir, target)
    (target / "config.yaml").unlink()
    if config is not None:
        (target / "config.yaml").write_text(config)
    return target


_PIPELINE = "pipeline:\n  name: pyannote.audio.pipelines.SpeakerDiarization\n  params:\n"


@pytest.mark.parametrize(
    "config, message",
    [
        (None, "config.yaml does not exist"),
        ("pipeline: [unclosed\n", "not a valid pyannote pipeline config"),
        ("pipeline:\n  name: pyannote.audio.pipelines.VoiceActivityDetection\n", "not a speaker diarization pipeline"),
        (_PIPELINE + "    segmentation: pyannote/segmentation-3.0\n    embedding: $model/embedding\n    plda: $model/plda\n",
         "'pyannote/segmentation-3.0' is not a local file or directory"),
        (_PIPELINE + "    segmentation: $model/segmentation\n    embedding: $model/embedding\n",
         "pipeline.params.plda is missing: pyannote.audio would fetch pyannote/speaker-diarization-community-1"),
        (_PIPELINE + "    segmentation: $model/segmentation\n    embedding: $model/plda\n    plda: $model/plda\n",
         "has no pytorch_model.bin"),
    ],
    ids=["no-config", "bad-yaml", "not-diarization", "hub-id", "no-plda", "no-checkpoint"],
)
def test_unusable_pipelines_fail_clearly_without_network(pipeline_dir, tmp_path, no_network, config, message):
    settings = _settings(str(_variant(pipeline_dir, tmp_path, config)))
    with pytest.raises(pd.PyannotePipelineError, match=re.escape(message)):
        pd.load_pipeline(settings)
    assert no_network == []


def test_missing_pipeline_and_relative_references(pipeline_dir, tmp_path):
    with pytest.raises(pd.PyannotePipelineError, match="model not found"):
        pd.load_pipeline(_settings(str(tmp_path / "absent")))
    with pytest.raises(pd.PyannotePipelineError, match="pyannote_pipeline is not set"):
        pd.load_pipeline(Settings())
    # Plain paths are taken relative to the pipeline directory, and the fingerprint follows the
    # weights they name: same files as the $model/ form, different config file.
    relative = _variant(pipeline_dir, tmp_path, _PIPELINE + (
        "    segmentation: segmentation/pytorch_model.bin\n    embedding: embedding\n    plda: plda\n"))
    version = pd.model_version(_settings(str(relative)))
    assert version.split(" pipeline=")[1].startswith("variant@")
    assert version.rsplit("@", 1)[1] != pd.model_version(_settings(str(pipeline_dir))).rsplit("@", 1)[1]


def test_with_a_token_hub_ids_are_fetched_with_it(pipeline_dir, tmp_path, no_network):
    config = _PIPELINE + "    segmentation: pyannote/segmentation-3.0\n    embedding: $model/embedding\n    plda: $model/plda\n"
    source = str(_variant(pipeline_dir, tmp_path, config))
    token = tmp_path / "hf-token"
    token.write_text("hf_test_token\n")
    with pytest.raises(RuntimeError, match="test: hub download attempted"):
        pd.load_pipeline(_settings(source, pyannote_token_path=str(token)))
    assert no_network == [("hf_hub_download", ("pyannote/segmentation-3.0", "pytorch_model.bin"), "hf_test_token")]
    with pytest.raises(pd.PyannotePipelineError, match="pyannote_token_path: cannot read"):
        pd.load_pipeline(_settings(source, pyannote_token_path=str(tmp_path / "absent")))


def test_device_setting():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pd.resolve_device("auto").type == expected
    assert pd.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(pd.PyannotePipelineError, match="no CUDA device"):
            pd.resolve_device("cuda")


def test_analyze_call_runs_the_pyannote_backend_when_configured(pipeline_dir, call_audio, tmp_path):
    from pipeline.call.analyze import analyze_call
    from pipeline.devtools.synth.calls import generate_call

    call = generate_call(tmp_path, "pyan", seed=1, n_speakers=2)
    result = analyze_call(call.audio_path, "pyan", settings=_settings(str(pipeline_dir)))
    assert result.ok, result.manifest.reason
    assert result.manifest.versions["diarization"].startswith("pyannote.audio==")
    metrics = {r["stage"]: r for r in result.tables["stage_metrics"].to_pylist()}
    assert metrics["diarization"]["backend"] == "pyannote" and metrics["diarization"]["device"] == "cpu"
    assert result.tables["speaker_turns"].num_rows > 0
