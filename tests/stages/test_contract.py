"""The stage contract: every stage the one-call path runs describes itself, and stage_metrics'
backend, device and model columns come from those descriptions."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.call.analyze import STAGES
from pipeline.records import FaceBranchResult
from pipeline.settings import DiarizationSettings, Settings, TranscriptionSettings
from pipeline.stages.contract import Stage, StageInfo
from pipeline.stages.vision import face_branch


def test_every_stage_of_the_call_path_has_an_entry_function_and_a_unique_name():
    names = [s.name for s in (*STAGES, *face_branch.PARTS)]
    assert len(names) == len(set(names))
    assert all(isinstance(s, Stage) and callable(s.run) for s in STAGES)
    assert all(part.run is None for part in face_branch.PARTS)  # timed inside analyze_video


def test_backends_devices_and_model_keys_follow_the_settings():
    info = {s.name: s.info(Settings()) for s in STAGES}
    assert info["decode"] == StageInfo("pyav", None, "cpu")
    assert info["speech_activity"] == StageInfo("silero-vad-onnx", "speech_activity", "cpu")
    assert info["diarization"] == StageInfo("embedded-resemblyzer", "diarization", "cpu")
    assert info["transcription"].backend == Settings().transcription.backend
    assert info["voice_features"].model_key == info["voice_affect"].model_key == "voice_affect"
    assert info["flags"] == StageInfo("rules", "flags", "cpu")

    gpu = dataclasses.replace(
        Settings(), diarization=DiarizationSettings(backend="pyannote", device="cuda"),
        transcription=TranscriptionSettings(backend="openai-whisper", device="cuda"),
    )
    info = {s.name: s.info(gpu) for s in STAGES}
    assert info["diarization"] == StageInfo("pyannote", "diarization", "cuda")
    assert info["transcription"] == StageInfo("openai-whisper", "transcription", "cuda")


def test_an_unknown_diarization_backend_is_named():
    bad = dataclasses.replace(Settings(), diarization=DiarizationSettings(backend="nope"))
    with pytest.raises(ValueError, match="unknown diarization backend 'nope'"):
        {s.name: s.info(bad) for s in STAGES}


def test_the_heavy_clip_model_is_reported_as_it_ran():
    ran = FaceBranchResult(tracks=[], affect=[], frames_sampled=0, seconds={}, clip_device="cuda",
                           versions={"face_expression_clips": "mae-dfer-torch:checkpoint-sha256=ab"})
    assert face_branch.parts_info(Settings(), ran)["face_expression_clips"] == StageInfo(
        "mae-dfer-torch", "face_expression_clips", "cuda")
    assert face_branch.parts_info(Settings(), None)["face_expression_clips"] == StageInfo(
        "mae-dfer-onnx", "face_expression_clips", "cpu")


def test_model_versions_come_from_the_stages_that_have_models():
    from pipeline.call.analyze import _versions

    versions = _versions(Settings(), None)
    assert set(versions) == {"speech_activity", "diarization", "transcription", "text_affect", "voice_affect", "flags"}
    assert versions["flags"] == "frustration-v1"


def test_other_flag_thresholds_are_another_rule_version():
    import dataclasses

    from pipeline.settings import FlagSettings
    from pipeline.stages import flags

    assert flags.rule_version(FlagSettings()) == "frustration-v1"
    stricter = flags.rule_version(dataclasses.replace(FlagSettings(), valence_max=-0.4))
    assert stricter.startswith("frustration-v1.") and stricter != flags.rule_version(FlagSettings(arousal_min=0.3))
    assert stricter == flags.rule_version(FlagSettings(valence_max=-0.4))  # the same thresholds, the same version
