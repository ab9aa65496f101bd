"""The face branch inside analyze_call, on generated video calls with known truth (real models)."""

from __future__ import annotations

import json

import pytest

from pipeline.call.analyze import analyze_call
from pipeline.jobs.quality_gate import gate_call_tables
from pipeline.settings import Settings
from pipeline.stages.vision import face_expression
from pipeline.devtools.synth_video import generate_video_call

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture(scope="module")
def video_call(tmp_path_factory):
    out = tmp_path_factory.mktemp("video")
    # Three tiles: the agent, the customer and a muted observer who fidgets but never speaks.
    truth = generate_video_call(out, "vid-e2e", seed=1, n_tiles=3, silent_tiles=1)
    metadata = json.loads(truth.metadata_path.read_text())
    crops_read = []  # faces passed to the light expression model, per call
    real_predict = face_expression.ExpressionModel.predict
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(face_expression.ExpressionModel, "predict",
                      lambda self, crops: crops_read.append(len(crops)) or real_predict(self, crops))
        result = analyze_call(truth.video_path, "vid-e2e", settings=Settings(), metadata=metadata)
    assert result.ok, result.manifest.reason
    result.crops_read = sum(crops_read)
    return truth, metadata, result


def _tile_of(row, truth) -> int:
    """The tile whose box holds the track's mean box centre."""
    width, height = truth.size
    cx, cy = (row["box_x0"] + row["box_x1"]) / 2 * width, (row["box_y0"] + row["box_y1"]) / 2 * height
    (tile,) = [t for t in truth.tiles if t.box[0] <= cx <= t.box[2] and t.box[1] <= cy <= t.box[3]]
    return tile.index


def test_every_tile_is_one_track_linked_to_its_own_speaker_and_the_observer_to_none(video_call):
    truth, _, result = video_call
    tracks = result.tables["face_tracks"].to_pylist()
    assert sorted(_tile_of(r, truth) for r in tracks) == [t.index for t in truth.tiles]
    for row in tracks:
        tile = truth.tiles[_tile_of(row, truth)]
        if tile.silent:
            assert row["speaker"] is None and row["role"] is None and row["link_confidence"] == 0.0
        else:
            # The synthetic truth labels speakers by role; the analysis found the role itself.
            assert row["role"] == tile.speaker, (row, tile)
            assert 0.3 <= row["link_confidence"] <= 1.0
        assert row["n_usable"] > 0.8 * truth.duration_s * Settings().vision.sample_fps


def test_only_the_customers_face_reaches_the_expression_model(video_call):
    """The agent's face and the unlinked observer's are found and followed (to know whose face is
    whose) but never passed to an expression model: the model saw exactly the customer's usable faces."""
    _, _, result = video_call
    tracks = result.tables["face_tracks"].to_pylist()
    by_role = {role: sum(t["n_usable"] for t in tracks if t["role"] == role) for role in ("customer", "agent", None)}
    assert by_role["agent"] > 0 and by_role[None] > 0  # there were faces it could have read
    assert result.crops_read == by_role["customer"] > 0


def test_face_readings_reach_the_fused_windows_of_the_customer_only(video_call):
    _, _, result = video_call
    tracks = result.tables["face_tracks"].to_pylist()
    customers = {r["speaker"] for r in tracks if r["role"] == "customer"}
    affect = result.tables["speaker_affect"].to_pylist()
    assert {w["role"] for w in affect} == {"customer"}
    with_face = [w for w in affect if "face" in w["modalities"].split(",")]
    assert with_face and {w["speaker"] for w in with_face} == customers
    for w in with_face:
        assert -1 <= w["face_valence"] <= 1 and -1 <= w["face_arousal"] <= 1
    face_rows = result.tables["face_affect"].to_pylist()
    assert {r["track_id"] for r in face_rows} == {r["track_id"] for r in tracks if r["role"] == "customer"}
    assert {r["role"] for r in face_rows} == {"customer"}
    for r in face_rows:
        assert sum(r[f"p_{e}"] for e in EMOTIONS) == pytest.approx(1, abs=1e-3)


def test_video_call_tables_pass_the_gate_and_the_audit_names_every_face(video_call):
    _, _, result = video_call
    gate = gate_call_tables(result.tables)
    assert gate.passed, gate.failures
    audit = [a for a in result.tables["audit"].to_pylist() if a["inference"] == "face_expression"]
    unlinked = [r["track_id"] for r in result.tables["face_tracks"].to_pylist() if r["speaker"] is None]
    assert {a["subject"] for a in audit if a["subject"].startswith("face_track:")} == {f"face_track:{t}" for t in unlinked}
    decided = {(a["role"], a["performed"], a["policy_rule"], a["consent"]) for a in audit}
    assert decided == {("customer", True, "customer-consent", "consent.video=true"),
                       ("agent", False, "agent-no-affect", None),
                       (None, False, "face-unlinked", None)}
    stages = set(result.tables["stage_metrics"].column("stage").to_pylist())
    assert {"face_detection", "face_expression", "face_linking"} <= stages
    assert result.tables["calls"].column("has_video").to_pylist() == [True]


def test_without_video_consent_no_face_is_read(video_call, tmp_path):
    truth, metadata, _ = video_call
    refused = {**metadata, "consent": {**metadata["consent"], "video": False}}
    result = analyze_call(truth.video_path, "vid-no-consent", settings=Settings(), metadata=refused)
    assert result.ok
    assert result.tables["face_tracks"].num_rows == 0 and result.tables["face_affect"].num_rows == 0
    assert "face_detection" not in result.manifest.stage_seconds
    audit = [a for a in result.tables["audit"].to_pylist() if a["inference"] == "face_expression"]
    assert audit and all(not a["performed"] for a in audit)
    [customer] = [a for a in audit if a["role"] == "customer"]
    assert (customer["policy_rule"], customer["consent"]) == ("customer-consent", "consent.video=false")
    assert all("face" not in w.split(",") for w in result.tables["speaker_affect"].column("modalities").to_pylist())


def test_a_video_stream_that_stops_early_keeps_the_whole_audio(video_call, tmp_path):
    truth, metadata, _ = video_call
    import av
    import numpy as np

    # Re-mux the generated call with its video stopping at 40 %: audio whole, video cut short.
    cut = tmp_path / "cut.mp4"
    with av.open(str(truth.video_path)) as src, av.open(str(cut), "w") as dst:
        v_in, a_in = src.streams.video[0], src.streams.audio[0]
        v_out, a_out = dst.add_stream_from_template(v_in), dst.add_stream_from_template(a_in)
        limit = 0.4 * truth.duration_s
        for packet in src.demux(v_in, a_in):
            if packet.dts is None:
                continue
            if packet.stream is v_in:
                if float(packet.pts * v_in.time_base) > limit:
                    continue
                packet.stream = v_out
            else:
                packet.stream = a_out
            dst.mux(packet)
    result = analyze_call(cut, "vid-cut", settings=Settings(), metadata=metadata)
    assert result.ok
    last = max(r["last_s"] for r in result.tables["face_tracks"].to_pylist())
    assert last <= 0.4 * truth.duration_s + 0.5
    assert result.manifest.duration_s == pytest.approx(truth.duration_s, abs=0.5)
    assert np.isfinite(result.tables["speaker_affect"].column("valence").to_numpy()).all()


def test_a_stream_that_breaks_mid_way_keeps_what_was_read_and_warns(video_call, monkeypatch):
    """FFmpeg conceals most damage, so the break is injected: the frame source raises VideoError
    after 60 frames, as sample_frames does on an unreadable packet."""
    from pipeline.stages.vision import face_branch
    from pipeline.stages.vision.video_frames import VideoError, sample_frames

    truth, metadata, _ = video_call

    def breaking(path, **kwargs):
        for frame in sample_frames(path, **kwargs):
            if frame.index == 60:
                raise VideoError("corrupt video at frame 60: Invalid data found when processing input")
            yield frame

    monkeypatch.setattr(face_branch, "sample_frames", breaking)
    result = analyze_call(truth.video_path, "vid-broken", settings=Settings(), metadata=metadata)
    assert result.ok
    assert result.manifest.warnings == [
        "video: corrupt video at frame 60: Invalid data found when processing input; faces read from the part before it"
    ]
    tracks = result.tables["face_tracks"].to_pylist()
    assert tracks and max(t["last_s"] for t in tracks) < 60 / Settings().vision.sample_fps
    assert result.manifest.duration_s == pytest.approx(truth.duration_s, abs=0.5)


def test_a_video_with_no_face_on_screen_reads_no_face_and_says_so(tmp_path):
    """Screen share or a camera pointed at a wall: the branch runs, finds nobody, and the call is
    analysed from its audio as usual."""
    import subprocess

    from pipeline.devtools.synth.calls import generate_call

    call = generate_call(tmp_path, "wall", seed=4)
    video = tmp_path / "wall.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=gray:s=320x240:r=10", "-i", str(call.audio_path),
         "-shortest", "-c:v", "libx264", "-c:a", "aac", str(video)],
        check=True,
    )
    metadata = {**json.loads(call.metadata_path.read_text()), "consent": {"video": True}}
    result = analyze_call(video, "wall", settings=Settings(), metadata=metadata)
    assert result.ok and result.tables["calls"].column("has_video").to_pylist() == [True]
    assert result.tables["face_tracks"].num_rows == 0 and result.tables["face_affect"].num_rows == 0
    assert result.manifest.stage_seconds["face_detection"] > 0
    audit = [a for a in result.tables["audit"].to_pylist() if a["inference"] == "face_expression"]
    assert len(audit) == 2 and all(not a["performed"] for a in audit)
    by_role = {a["role"]: a for a in audit}
    assert by_role["customer"]["basis"].endswith("consent.video=true; no face track linked to this speaker")
    assert by_role["agent"]["policy_rule"] == "agent-no-affect"
    assert result.tables["speaker_affect"].num_rows > 0
