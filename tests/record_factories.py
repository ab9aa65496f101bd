"""Small records for stage tests: speaker turns from spans, and words from text."""

from __future__ import annotations

from pyannote.core import Annotation, Segment

from pipeline.records import Word


def turns_from_spans(*spans: tuple[str, float, float]) -> Annotation:
    ann = Annotation(uri="t")
    for speaker, start, end in spans:
        ann[Segment(start, end)] = speaker
    return ann


def words_from_text(text: str, start: float, step: float = 0.3, p: float = 0.9) -> list[Word]:
    return [Word(start + i * step, start + i * step + 0.25, " " + w, p) for i, w in enumerate(text.split())]
