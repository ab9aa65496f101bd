"""Probe and decode: any container FFmpeg reads -> 16 kHz float32 audio, or a clear MediaError.

Decoding goes straight through the file once (PyAV), resampling on the fly, so odd rates
(8 kHz telephone, 44.1/48 kHz) and multi-channel input all come out the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.digests import file_sha256


class MediaError(Exception):
    """The input cannot be analysed; the message is the one-line reason for the quarantine."""


@dataclass(frozen=True)
class MediaInfo:
    path: str
    size_bytes: int
    sha256: str
    container: str
    has_audio: bool
    has_video: bool
    source_sample_rate: int
    source_channels: int
    declared_duration_s: float | None


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32 mono mix in [-1, 1]
    sample_rate: int
    info: MediaInfo
    # Two-channel sources only: (2, n) float32, each channel as recorded (contact-centre
    # recorders often put one party on each). None for mono and for more than two channels.
    channels: np.ndarray | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def probe(path: str | Path) -> MediaInfo:
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MediaError("empty file (0 bytes)")
    sha = file_sha256(path)
    try:
        with av.open(str(path)) as container:
            audio = next(iter(container.streams.audio), None)
            video = next(iter(container.streams.video), None)
            declared = float(container.duration / av.time_base) if container.duration else None
            if audio is not None and audio.duration is not None and audio.time_base is not None:
                declared = float(audio.duration * audio.time_base)
            if container.format.name == "wav":
                # FFmpeg derives a WAV's duration from the file size, which hides truncation.
                declared = _wav_header_duration(path) or declared
            return MediaInfo(
                path=str(path),
                size_bytes=size,
                sha256=sha,
                container=container.format.name,
                has_audio=audio is not None,
                has_video=video is not None,
                source_sample_rate=int(audio.rate or 0) if audio is not None else 0,
                source_channels=int(audio.channels or 0) if audio is not None else 0,
                declared_duration_s=declared,
            )
    except av.error.FFmpegError as exc:
        raise MediaError(f"not readable as media: {_ffmpeg_reason(exc)}") from None


def decode_audio(
    path: str | Path,
    *,
    sample_rate: int = 16000,
    min_duration_s: float = 0.5,
    max_duration_s: float = 4 * 3600.0,
) -> DecodedAudio:
    """Decode the first audio stream to float32 at ``sample_rate``: a mono mix, and both
    channels as well when the source has exactly two.

    Raises MediaError for: empty or non-media files, no audio stream, truncated files (decoded
    much shorter than the container declares), too short or too long recordings.
    """
    info = probe(path)
    if not info.has_audio:
        raise MediaError("no audio stream" + (" (video only)" if info.has_video else ""))
    if info.declared_duration_s and info.declared_duration_s > max_duration_s:
        raise MediaError(f"too long: {info.declared_duration_s:.0f} s > limit {max_duration_s:.0f} s")

    stereo = info.source_channels == 2
    # Planar float keeps the two channels apart; FFmpeg's resampler does the downmix otherwise.
    resampler = av.AudioResampler(format="fltp", layout="stereo" if stereo else "mono", rate=sample_rate)
    n_out = 2 if stereo else 1
    chunks: list[np.ndarray] = []
    decoded = 0
    max_samples = int(max_duration_s * sample_rate)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(n_out, -1)
                    chunks.append(chunk)
                    decoded += chunk.shape[1]
                if decoded > max_samples:
                    raise MediaError(f"too long: more than {max_duration_s:.0f} s of audio")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(n_out, -1))
    except av.error.FFmpegError as exc:
        # A decode error after good audio is still a damaged file: refuse rather than guess.
        raise MediaError(f"corrupt audio: {_ffmpeg_reason(exc)}") from None

    planes = np.concatenate(chunks, axis=1).astype(np.float32, copy=False) if chunks else np.zeros((n_out, 0), np.float32)
    channels = planes if stereo else None
    samples = planes.mean(axis=0, dtype=np.float32) if stereo else planes[0]
    duration = len(samples) / sample_rate
    if info.declared_duration_s and info.declared_duration_s > 1.0 and duration < 0.9 * info.declared_duration_s:
        raise MediaError(f"truncated: decoded {duration:.1f} s of {info.declared_duration_s:.1f} s declared")
    if duration < min_duration_s:
        raise MediaError(f"too short: {duration:.2f} s of audio (minimum {min_duration_s} s)")
    if not np.isfinite(planes).all():
        raise MediaError("corrupt audio: non-finite samples")
    np.clip(samples, -1.0, 1.0, out=samples)
    if channels is not None:
        np.clip(channels, -1.0, 1.0, out=channels)
    return DecodedAudio(samples=samples, sample_rate=sample_rate, info=info, channels=channels)


def _wav_header_duration(path: Path) -> float | None:
    """Duration the RIFF header promises (data chunk size / byte rate), None if not stated."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 20 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        if chunk == b"data":
            # 0 and 0xFFFFFFFF mean "unknown" (streamed writers): nothing is promised.
            return size / byte_rate if byte_rate and size not in (0, 0xFFFFFFFF) else None
        pos += 8 + size + (size & 1)
    return None


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200]
