"""Speech activity: audio -> speech regions (pyannote.core.Timeline), with silero-vad's bundled ONNX."""

from __future__ import annotations

import functools

import numpy as np
from pyannote.core import Segment, Timeline

from pipeline.settings import VadSettings

BACKEND = "silero-vad-onnx"


@functools.lru_cache(maxsize=1)
def _model():
    # Loaded once per worker process; the ONNX file ships inside the silero-vad wheel.
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=True)


def model_version() -> str:
    from importlib.metadata import version

    return f"silero-vad=={version('silero-vad')}"


def detect_speech(samples: np.ndarray, sample_rate: int, settings: VadSettings) -> Timeline:
    """Speech regions in seconds. Empty Timeline when there is no speech (not an error)."""
    import torch
    from silero_vad import get_speech_timestamps

    if sample_rate not in (8000, 16000):
        raise ValueError(f"silero-vad takes 8 or 16 kHz audio, got {sample_rate}")
    model = _model()
    model.reset_states()
    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
        model,
        threshold=settings.threshold,
        sampling_rate=sample_rate,
        min_speech_duration_ms=settings.min_speech_ms,
        min_silence_duration_ms=settings.min_silence_ms,
        speech_pad_ms=settings.speech_pad_ms,
    )
    return Timeline([Segment(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]).support()
