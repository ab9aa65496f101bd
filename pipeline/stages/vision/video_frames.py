"""Sampled video decoding: one pass straight through the stream, frames kept by timestamp.

Seeking per sampled frame re-decodes from the previous keyframe each time (5-20x slower than
decoding straight through on this kind of machine), so the stream is decoded once and a frame
is kept whenever its timestamp reaches the next sampling instant. Only kept frames are
converted to RGB (scaled in FFmpeg's swscale while converting), and frames are yielded one at
a time: memory does not grow with the call's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.stages import contract


class VideoError(Exception):
    """The video stream cannot be read; the message is a one-line reason."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # average frame rate of the stream (0 when the container does not say)
    duration_s: float | None
    codec: str


@dataclass(frozen=True)
class SampledFrame:
    index: int  # position among the sampled frames (0, 1, 2, ...)
    t: float  # presentation time, seconds from the start of the recording
    rgb: np.ndarray  # (H, W, 3) uint8, upright (display rotation applied), possibly scaled down


def probe_video(path: str | Path) -> VideoInfo | None:
    """The first video stream's geometry and rate, or None when the file has no video."""
    try:
        with av.open(str(path)) as container:
            stream = next(iter(container.streams.video), None)
            if stream is None:
                return None
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
            if duration is None and container.duration:
                duration = container.duration / av.time_base
            rate = stream.average_rate or stream.guessed_rate
            return VideoInfo(
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=float(rate) if rate else 0.0,
                duration_s=duration,
                codec=stream.codec_context.name,
            )
    except av.error.FFmpegError as exc:
        raise VideoError(f"video not readable: {' '.join(str(exc).split())[:200]}") from None


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Frame size after scaling the longer side down to max_side (never up); even numbers."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def sample_frames(path: str | Path, fps: float = 5.0, max_side: int | None = 640,
                  max_frames: int | None = None) -> Iterator[SampledFrame]:
    """Yield frames at ``fps`` (by presentation time) from one straight pass over the stream.

    A frame is kept when its time reaches the next sampling instant k/fps; when the source rate
    is below ``fps`` every frame is kept. Raises VideoError on an unreadable stream; frames
    already yielded stay valid (the caller decides whether a partial video is usable).
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    step = 1.0 / fps
    next_t = 0.0
    index = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame-parallel decoding in FFmpeg's own threads
            width, height = output_size(stream.codec_context.width, stream.codec_context.height, max_side)
            # Half a source frame of tolerance, so a 25 fps stream sampled at 5 fps keeps
            # every 5th frame instead of drifting on rounding.
            # (The nominal rate, not the average: gaps in a variable-rate stream lower the latter.)
            rate = float(stream.base_rate or stream.average_rate or 0) or 30.0
            tolerance = 0.5 / rate
            for frame in container.decode(stream):
                if frame.pts is None or frame.time is None:
                    continue
                t = float(frame.time)
                if t + tolerance < next_t:
                    continue
                rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
                # Phone recordings carry a display rotation: faces must be upright for MTCNN.
                quarter_turns = int(round(getattr(frame, "rotation", 0) / 90.0)) % 4
                if quarter_turns:
                    rgb = np.ascontiguousarray(np.rot90(rgb, quarter_turns))
                yield SampledFrame(index=index, t=round(t, 4), rgb=rgb)
                index += 1
                if max_frames is not None and index >= max_frames:
                    return
                # Skip sampling instants a slow source never reached (variable frame rate).
                next_t = max(next_t + step, math.floor((t + tolerance) / step) * step + step)
    except av.error.FFmpegError as exc:
        raise VideoError(f"corrupt video at frame {index}: {' '.join(str(exc).split())[:200]}") from None


# A part of the face branch's one pass over the video, timed inside it.
STAGE = contract.Stage("video_decode", backend=contract.fixed("pyav"))
