"""The synthetic video-call generator: a decodable mp4, truth consistent with the RTTM, mouths
that move only with their speaker's turns, and determinism for a seed."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from pipeline import metadata as call_metadata
from pipeline.devtools.evaluation import load_rttm
from pipeline.devtools.synth.calls import render_call
from pipeline.devtools.synth_video import VideoCallTruth, generate_video_call, mouth_openings, tile_boxes

FPS = 10


@pytest.fixture(scope="module")
def call(tmp_path_factory) -> VideoCallTruth:
    """Pinned speaker view, 4 tiles (one a silent observer), and one speaker heard but not shown."""
    root = tmp_path_factory.mktemp("video")
    return generate_video_call(root / "raw", "vc-test", seed=21, n_tiles=4, silent_tiles=1, audio_only=1,
                               layout="speaker_view", fps=FPS, size=(480, 270), overlap=True,
                               truth_dir=root / "truth")


def test_mp4_has_h264_video_and_aac_audio_of_the_calls_length(call):
    assert call.video_path.suffix == ".mp4" and call.video_path.parent.name == "raw"
    assert call.rttm_path.parent.name == call.truth_path.parent.name == "truth"
    assert 30.0 <= call.duration_s <= 75.0
    with av.open(str(call.video_path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert (video.codec_context.width, video.codec_context.height) == (480, 270)
        assert video.average_rate == FPS
        n_frames = sum(1 for _ in container.decode(video=0))
    assert n_frames == int(np.ceil(call.duration_s * FPS))
    with av.open(str(call.video_path)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        rate = container.streams.audio[0].rate
    assert rate == 16000
    # AAC pads the start by a frame or two: the length matches to within a few frames.
    assert abs(len(samples) / rate - call.duration_s) < 0.15
    # The speech is there: louder inside the reference turns than between them.
    t = np.arange(len(samples)) / rate
    inside = np.zeros(len(samples), dtype=bool)
    for turn in call.turns:
        inside |= (t >= turn.start) & (t < turn.end)
    assert np.sqrt(np.mean(samples[inside] ** 2)) > 5 * np.sqrt(np.mean(samples[~inside] ** 2))


def test_truth_matches_the_rttm_and_the_tiles(call):
    reference = next(iter(load_rttm(call.rttm_path).values()))
    assert set(reference.labels()) == set(call.speakers) and len(call.speakers) == 4
    shown = [t.speaker for t in call.tiles if not t.silent]
    assert len(call.tiles) == 4 and len(call.silent_tiles) == 1 and len(call.audio_only) == 1
    # Every speaker is on exactly one tile or heard only; nobody is both.
    assert sorted(shown + list(call.audio_only)) == sorted(call.speakers)
    assert json.loads(call.truth_path.read_text()) == call.describe()
    boxes = [t.box for t in call.tiles]
    assert boxes == tile_boxes("speaker_view", 4, (480, 270))
    metadata = json.loads(call.metadata_path.read_text())
    assert metadata["consent"]["video"] is True and metadata["call_id"] == "vc-test"
    assert call_metadata.parse(call.metadata_path.read_bytes()).consent.video is True  # under the contract


def test_mouths_open_only_while_their_speaker_talks():
    rendered = render_call(seed=3, n_speakers=2, telephone=False, snr_db=30.0, frustrated=False)
    n_frames = int(np.ceil(rendered.duration_s * 25))
    times = (np.arange(n_frames) + 0.5) / 25
    for speaker in ("agent", "customer"):
        opening = mouth_openings(rendered, speaker, n_frames, 25)
        talking = np.zeros(n_frames, dtype=bool)
        for turn in rendered.turns:
            if turn.speaker == speaker:
                talking |= (times >= turn.start) & (times < turn.end)
        assert np.all(opening[~talking] == 0.0)
        assert 0.0 <= opening.min() and opening.max() <= 1.0
        assert np.mean(opening[talking] > 0.2) > 0.5  # open for most of the talking
    assert not mouth_openings(rendered, None, n_frames, 25).any()


def test_deterministic_for_a_seed(tmp_path):
    first = generate_video_call(tmp_path / "a", "same", seed=5, fps=5, size=(320, 180), silent_tiles=1, n_tiles=3)
    second = generate_video_call(tmp_path / "b", "same", seed=5, fps=5, size=(320, 180), silent_tiles=1, n_tiles=3)
    other = generate_video_call(tmp_path / "c", "same", seed=6, fps=5, size=(320, 180), silent_tiles=1, n_tiles=3)
    assert first.rttm_path.read_text() == second.rttm_path.read_text()
    assert first.tiles == second.tiles and first.turns == second.turns
    assert json.loads(first.truth_path.read_text())["tiles"] == json.loads(second.truth_path.read_text())["tiles"]
    assert first.tiles != other.tiles


def test_gallery_tiles_are_disjoint_16_9_and_inside_the_frame():
    for n in (2, 3, 4):
        boxes = tile_boxes("gallery", n, (640, 360))
        assert len(boxes) == n
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
            assert abs((x1 - x0) / (y1 - y0) - 16 / 9) < 0.02
            for a0, b0, a1, b1 in boxes[i + 1:]:
                assert x1 <= a0 or a1 <= x0 or y1 <= b0 or b1 <= y0
    big, *strip = tile_boxes("speaker_view", 3, (640, 360))
    assert all((big[2] - big[0]) > 2 * (b[2] - b[0]) for b in strip)


@pytest.mark.parametrize("kwargs", [
    dict(n_tiles=1, silent_tiles=0),  # one speaker
    dict(n_tiles=4, silent_tiles=0, audio_only=1),  # five speakers
    dict(n_tiles=2, silent_tiles=2, audio_only=2),  # nobody speaking on screen
    dict(size=(641, 360)),
    dict(layout="carousel"),
])
def test_rejects_impossible_calls(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_video_call(tmp_path, "bad", seed=0, **kwargs)
