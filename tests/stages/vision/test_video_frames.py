"""Sampled decoding: frames kept by timestamp in one pass, scaled, streamed."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.stages.vision.video_frames import VideoError, output_size, probe_video, sample_frames


def _write_numbered_video(path, n_frames=100, rate=25, size=(320, 240), codec="libx264", pts_step=None):
    """Each frame's grey level encodes its index, so a test can tell which frames were kept."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, rate * (pts_step or 1))
        for i in range(n_frames):
            img = _numbered_image(i, size)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i * (pts_step or 1)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _numbered_image(i: int, size) -> np.ndarray:
    """Left half (i mod 25) * 10, right half (i div 25) * 50: survives lossy coding."""
    img = np.empty((size[1], size[0], 3), np.uint8)
    img[:, : size[0] // 2] = (i % 25) * 10
    img[:, size[0] // 2 :] = (i // 25) * 50
    return img


def _index_of(frame) -> int:
    half = frame.rgb.shape[1] // 2
    low = int(round(float(np.median(frame.rgb[:, :half])) / 10))
    high = int(round(float(np.median(frame.rgb[:, half:])) / 50))
    return high * 25 + low


def test_keeps_frames_by_timestamp_at_the_requested_rate(tmp_path):
    path = tmp_path / "numbered.mp4"
    _write_numbered_video(path, n_frames=100, rate=25)
    frames = list(sample_frames(path, fps=5.0, max_side=None))
    assert len(frames) == 20
    assert [f.index for f in frames] == list(range(20))
    np.testing.assert_allclose([f.t for f in frames], np.arange(20) * 0.2, atol=1e-3)
    assert [_index_of(f) for f in frames] == list(range(0, 100, 5))


def test_source_slower_than_sampling_rate_keeps_every_frame(tmp_path):
    path = tmp_path / "slow.mp4"
    _write_numbered_video(path, n_frames=12, rate=4)
    frames = list(sample_frames(path, fps=5.0, max_side=None))
    assert [_index_of(f) for f in frames] == list(range(12))


def test_scales_the_longer_side_down_and_never_up(tmp_path):
    path = tmp_path / "big.mp4"
    _write_numbered_video(path, n_frames=5, rate=25, size=(1280, 720))
    frame = next(sample_frames(path, fps=5.0, max_side=640))
    assert frame.rgb.shape == (360, 640, 3) and frame.rgb.dtype == np.uint8
    assert output_size(320, 240, 640) == (320, 240)
    assert output_size(720, 1280, 640) == (360, 640)


def test_probe_reports_geometry_and_none_for_audio_only(tmp_path):
    path = tmp_path / "v.mp4"
    _write_numbered_video(path, n_frames=50, rate=25, size=(320, 240))
    info = probe_video(path)
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(2.0, abs=0.1)

    wav = tmp_path / "a.wav"
    import soundfile as sf
    sf.write(wav, np.zeros(8000, np.float32), 8000)
    assert probe_video(wav) is None
    assert list(sample_frames(wav)) == []


def test_variable_frame_rate_gaps_do_not_shift_later_samples(tmp_path):
    # 25 fps with a 2 s hole in the middle (frames 25..74 missing): samples resume on the grid.
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height = 160, 120
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 25)
        for i in [*range(25), *range(75, 100)]:
            frame = av.VideoFrame.from_ndarray(_numbered_image(i, (160, 120)), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    times = [f.t for f in sample_frames(path, fps=5.0, max_side=None)]
    assert times[:5] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8], abs=1e-3)
    assert times[5:] == pytest.approx([3.0, 3.2, 3.4, 3.6, 3.8], abs=1e-3)


def test_corrupt_stream_raises_a_video_error(tmp_path):
    path = tmp_path / "v.mp4"
    _write_numbered_video(path, n_frames=50, rate=25)
    data = bytearray(path.read_bytes())
    data = data[:len(data) // 3] + bytes(len(data) // 3) + data[2 * len(data) // 3:]  # zero the middle
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 5000)
    with pytest.raises(VideoError):
        probe_video(garbage)
    # A damaged middle either raises VideoError or yields fewer frames; it never hangs or crashes.
    try:
        frames = list(sample_frames(broken, fps=5.0))
        assert len(frames) < 10
    except VideoError as exc:
        assert "corrupt video" in str(exc)


def test_max_frames_stops_early(tmp_path):
    path = tmp_path / "v.mp4"
    _write_numbered_video(path, n_frames=100, rate=25)
    assert len(list(sample_frames(path, fps=25.0, max_side=None, max_frames=7))) == 7


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_display_rotation_is_applied_as_ffmpeg_shows_the_video(tmp_path, rotate):
    """A phone recording's display matrix: frames come out upright, as ffmpeg would show them."""
    import subprocess

    source = tmp_path / "upright.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(5):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:40] = 255  # a white band along the top edge
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}",
                    str(rotated)], check=True)
    shown = subprocess.run(["ffmpeg", "-v", "error", "-i", str(rotated), "-frames:v", "1", "-f", "rawvideo",
                            "-pix_fmt", "gray", "-"], check=True, capture_output=True).stdout
    frame = next(sample_frames(rotated, fps=5.0, max_side=None))
    grey = frame.rgb.mean(axis=2)
    assert grey.size == len(shown)
    expected = np.frombuffer(shown, np.uint8).reshape(grey.shape).astype(float)
    assert np.abs(grey - expected).mean() < 5  # the same picture, band on the same edge
