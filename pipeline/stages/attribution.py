"""Words -> speakers -> utterances: each word goes to the speaker it overlaps most in time."""

from __future__ import annotations

from dataclasses import dataclass

from pyannote.core import Annotation, Segment

from pipeline.stages.transcription import Word

UNKNOWN_SPEAKER = "UNKNOWN"


@dataclass(frozen=True)
class Utterance:
    utterance_id: int
    speaker: str
    start: float
    end: float
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.words)

    @property
    def asr_confidence(self) -> float:
        return sum(w.probability for w in self.words) / len(self.words)


def speaker_of(word: Word, turns: Annotation, max_distance_s: float = 1.0) -> str:
    window = Segment(word.start, max(word.end, word.start + 1e-3))
    cropped = turns.crop(window, mode="intersection")
    if len(cropped):
        return max(cropped.labels(), key=cropped.label_duration)
    # A word Whisper placed just outside any turn (VAD padding differs): take the nearest turn.
    best, best_distance = UNKNOWN_SPEAKER, max_distance_s
    for segment, _, label in turns.itertracks(yield_label=True):
        distance = max(segment.start - word.end, word.start - segment.end, 0.0)
        if distance <= best_distance:
            best, best_distance = label, distance
    return best


def build_utterances(words: list[Word], turns: Annotation, max_pause_s: float = 1.0) -> list[Utterance]:
    """Consecutive words of one speaker form an utterance; a speaker change or a long pause splits."""
    utterances: list[Utterance] = []
    current: list[Word] = []
    current_speaker = None
    for word in sorted(words, key=lambda w: w.start):
        speaker = speaker_of(word, turns)
        if current and (speaker != current_speaker or word.start - current[-1].end > max_pause_s):
            utterances.append(_utterance(len(utterances), current_speaker, current))
            current = []
        current.append(word)
        current_speaker = speaker
    if current:
        utterances.append(_utterance(len(utterances), current_speaker, current))
    return utterances


def _utterance(index: int, speaker: str, words: list[Word]) -> Utterance:
    return Utterance(index, speaker, words[0].start, max(w.end for w in words), tuple(words))
