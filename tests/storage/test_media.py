import subprocess

import numpy as np
import pytest
import soundfile as sf

from pipeline.storage.media import MediaError, decode_audio, probe


def _tone(path, seconds=2.0, rate=8000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.repeat(x[:, None], channels, axis=1) if channels > 1 else x, rate)
    return path


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def test_odd_rate_and_stereo_resampled_to_16k_mono(tmp_path):
    audio = decode_audio(_tone(tmp_path / "a.wav", 2.0, 44100, channels=2))
    assert audio.sample_rate == 16000 and audio.samples.ndim == 1
    assert abs(audio.duration_s - 2.0) < 0.02
    assert audio.info.source_sample_rate == 44100 and audio.info.source_channels == 2
    # The 440 Hz tone survives resampling: its spectral peak stays at 440 Hz.
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * 16000 / len(audio.samples) - 440) < 2


@pytest.mark.parametrize("ext", ["mp3", "m4a", "flac", "ogg"])
def test_compressed_containers(tmp_path, ext):
    src = _tone(tmp_path / "a.wav", 3.0, 8000)
    _ffmpeg("-i", src, tmp_path / f"a.{ext}")
    audio = decode_audio(tmp_path / f"a.{ext}")
    assert abs(audio.duration_s - 3.0) < 0.1
    assert audio.info.sha256 and len(audio.info.sha256) == 64


def test_video_with_audio_is_flagged_as_video(tmp_path):
    out = tmp_path / "v.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=2", "-f", "lavfi", "-i", "sine=frequency=300:duration=2",
            "-shortest", "-c:v", "mpeg4", "-c:a", "aac", out)
    audio = decode_audio(out)
    assert audio.info.has_video and audio.info.has_audio


def test_unusable_inputs_raise_with_a_reason(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.mp3").write_text("this is not audio at all\n" * 50)
    _tone(tmp_path / "full.wav", 5.0, 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "truncated.wav").write_bytes(data[: len(data) // 3])  # header still claims 5 s
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=1", "-c:v", "mpeg4", tmp_path / "video_only.mp4")
    _tone(tmp_path / "blip.wav", 0.1, 16000)
    expected = {
        "empty.wav": "empty file",
        "text.mp3": "not readable as media",
        "truncated.wav": "truncated",
        "video_only.mp4": "no audio stream",
        "blip.wav": "too short",
    }
    for name, reason in expected.items():
        with pytest.raises(MediaError, match=reason):
            decode_audio(tmp_path / name)


def test_too_long_is_refused_before_decoding(tmp_path):
    path = _tone(tmp_path / "long.wav", 3.0, 8000)
    with pytest.raises(MediaError, match="too long"):
        decode_audio(path, max_duration_s=2.0)
    assert probe(path).declared_duration_s == pytest.approx(3.0, abs=0.01)
