"""The heavy clip model (MAE-DFER's LGI-Former) on selected clips: in-process, and through the
batch's shared Ray actor that batches clips across calls. Random weights of a narrow, shallow
LGI-Former with the paper's input geometry (16 x 160 x 160) test the path, never quality."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from model_scripts import load_model_script

from pipeline.storage import object_store
from pipeline.call.analyze import analyze_call
from pipeline.jobs.batch import run_batch
from pipeline.networks.lgi_former import LGIFormerConfig
from pipeline.networks.mae_dfer_checkpoint import export_checkpoint_onnx
from pipeline.settings import ModelStoreSettings, Settings, VisionSettings
from pipeline.stages.vision import face_expression_clips
from pipeline.devtools.synth_video import generate_video_call


# The paper's clip geometry (so real crops fit) with a tiny trunk, so a clip costs milliseconds.
GEOMETRY_CONFIG = LGIFormerConfig(embed_dim=32, depth=1, num_heads=2)


def _builder():
    return load_model_script("build_test_mae_dfer_checkpoint")


@pytest.fixture(scope="module")
def clip_onnx(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clipmodel")
    checkpoint = _builder().build_test_checkpoint(root / "checkpoint.pth", GEOMETRY_CONFIG)
    return export_checkpoint_onnx(str(checkpoint), root / "mae-dfer-tiny.onnx", GEOMETRY_CONFIG).onnx_path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return generate_video_call(tmp_path_factory.mktemp("vid"), "vid-clips", seed=2, n_tiles=2)


def _clip_settings(base: Settings, onnx_path: Path, cache: Path) -> Settings:
    vision = dataclasses.replace(VisionSettings(), clip_model=str(onnx_path), clip_every_s=4.0, clip_arousal_trigger=0.0,
                                 clip_batch_size=8)
    return dataclasses.replace(base, vision=vision, model_store=ModelStoreSettings(cache_dir=str(cache)))


def test_clips_are_cut_per_track_at_the_configured_rate_and_mapped_to_the_seven_classes(clip_onnx, video, tmp_path):
    settings = _clip_settings(Settings(), clip_onnx, tmp_path / "cache")
    metadata = json.loads(video.metadata_path.read_text())
    result = analyze_call(video.video_path, "vid-clips", settings=settings, metadata=metadata)
    assert result.ok, result.manifest.reason
    rows = result.tables["face_affect"].to_pylist()
    version = face_expression_clips.load_clip_model(settings).version
    heavy = [r for r in rows if r["model"] == version]
    light = [r for r in rows if r["model"] != version]
    assert heavy and light
    # The customer's face only: the agent's never reaches either model.
    tracks = {r["track_id"] for r in result.tables["face_tracks"].to_pylist() if r["role"] == "customer"}
    assert tracks and {r["track_id"] for r in heavy} == {r["track_id"] for r in light} == tracks
    for track in tracks:
        starts = sorted(r["end_s"] for r in heavy if r["track_id"] == track)
        # One clip per clip_every_s at most, each spanning 16 sampled frames (3 s at 5 fps).
        assert all(b - a >= settings.vision.clip_every_s - 1e-6 for a, b in zip(starts, starts[1:]))
        assert len(starts) >= int(video.duration_s / settings.vision.clip_every_s) - 2
    for r in heavy:
        assert r["n_frames"] == 16
        assert r["end_s"] - r["start_s"] == pytest.approx(15 / settings.vision.sample_fps, abs=0.05)
        probs = [r[f"p_{e}"] for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-3) and min(probs) >= 0
    assert result.manifest.versions["face_expression_clips"] == version
    assert "face_expression_clips" in result.manifest.stage_seconds


def test_a_high_arousal_trigger_keeps_the_heavy_model_off_calm_faces(clip_onnx, video, tmp_path):
    settings = _clip_settings(Settings(), clip_onnx, tmp_path / "cache")
    settings = dataclasses.replace(settings, vision=dataclasses.replace(settings.vision, clip_arousal_trigger=0.99))
    metadata = json.loads(video.metadata_path.read_text())
    result = analyze_call(video.video_path, "vid-calm", settings=settings, metadata=metadata)
    models = {r["model"] for r in result.tables["face_affect"].to_pylist()}
    assert models == {result.manifest.versions["face_expression"]}


def test_the_batch_shares_one_clip_model_actor_across_calls(settings, ray_local, clip_onnx, video):
    settings = _clip_settings(settings, clip_onnx, Path(settings.marts.duckdb_path).parent / "cache")
    client = object_store.s3_client(settings.s3)
    s3 = settings.s3
    for call_id in ("vid-a", "vid-b"):
        object_store.upload_file(client, video.video_path, s3.raw_bucket, f"{s3.raw_prefix}2024-05-02/{call_id}.mp4")
        object_store.put_bytes(client, s3.raw_bucket, f"{s3.raw_prefix}2024-05-02/{call_id}.json", video.metadata_path.read_bytes())
    report = run_batch(settings)
    assert sorted(report.ok) == ["vid-a", "vid-b"], report
    for call_id in ("vid-a", "vid-b"):
        key = f"{s3.curated_prefix}face_affect/date=2024-05-02/call_id={call_id}/part-0.parquet"
        local = Path(settings.marts.duckdb_path).parent / f"{call_id}.parquet"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(object_store.get_bytes(client, s3.curated_bucket, key))
        models = set(pq.read_table(local).column("model").to_pylist())
        assert any(m.startswith("mae-dfer") for m in models), models


def test_torch_runtime_reads_clips_like_the_onnx_export(tmp_path):
    """The torch fallback (for GPU nodes whose onnxruntime-gpu cannot reach CUDA) gives the
    ONNX export's probabilities on the same clips, from the same checkpoint."""
    import numpy as np

    checkpoint = _builder().build_test_checkpoint(tmp_path / "checkpoint.pth", GEOMETRY_CONFIG, seed=3)
    exported = export_checkpoint_onnx(str(checkpoint), tmp_path / "tiny.onnx", GEOMETRY_CONFIG).onnx_path
    onnx_model = face_expression_clips.ClipExpressionModel(exported, "cpu", batch_size=2, threads=1)
    torch_model = face_expression_clips.TorchClipModel(checkpoint, "cpu", batch_size=2, config=GEOMETRY_CONFIG)
    clips = np.random.default_rng(0).integers(0, 256, (3, 16, 160, 160, 3), dtype=np.uint8)
    np.testing.assert_allclose(torch_model.predict(clips), onnx_model.predict(clips), atol=1e-4)
    assert torch_model.classes == onnx_model.classes and torch_model.providers == ["torch:cpu"]


def test_runtime_choice_prefers_onnx_and_takes_torch_only_where_it_alone_reaches_the_gpu(monkeypatch):
    import onnxruntime
    import torch

    choose = face_expression_clips.choose_runtime
    assert choose("auto", "auto", is_checkpoint=False) == ("onnxruntime", "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose("auto", "auto", is_checkpoint=True) == ("onnxruntime", "auto")
    assert choose("torch", "auto", is_checkpoint=True) == ("torch", "cpu")
    with pytest.raises(RuntimeError, match="no CUDA"):
        choose("torch", "cuda", is_checkpoint=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose("auto", "auto", is_checkpoint=True) == ("torch", "cuda")
    assert choose("auto", "cpu", is_checkpoint=True) == ("onnxruntime", "cpu")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose("auto", "auto", is_checkpoint=True) == ("onnxruntime", "auto")
    with pytest.raises(ValueError):
        choose("tensorrt", "auto", is_checkpoint=True)
