"""Words -> speakers -> utterances: each word goes to the speaker it overlaps most in time."""

from __future__ import annotations

from pipeline.records import Utterance, Word
from pipeline.stages import contract


import numpy as np
from pyannote.core import Annotation


UNKNOWN_SPEAKER = "UNKNOWN"


class TurnIndex:
    """Speaker turns as arrays, so attributing a word is one vectorised pass (an hour-long call
    has thousands of turns and words; cropping an Annotation per word took ~20 s)."""

    def __init__(self, turns: Annotation):
        tracks = [(seg.start, seg.end, label) for seg, _, label in turns.itertracks(yield_label=True)]
        self.starts = np.array([t[0] for t in tracks], dtype=np.float64)
        self.ends = np.array([t[1] for t in tracks], dtype=np.float64)
        self.labels = [t[2] for t in tracks]

    def speaker_of(self, word: Word, max_distance_s: float = 1.0) -> str:
        if not self.labels:
            return UNKNOWN_SPEAKER
        end = max(word.end, word.start + 1e-3)
        overlap = np.minimum(self.ends, end) - np.maximum(self.starts, word.start)
        if overlap.max() > 0:
            per_label: dict[str, float] = {}
            for i in np.flatnonzero(overlap > 0):
                per_label[self.labels[i]] = per_label.get(self.labels[i], 0.0) + float(overlap[i])
            return max(per_label, key=per_label.get)
        # A word Whisper placed just outside any turn (VAD padding differs): take the nearest turn.
        distance = np.maximum(np.maximum(self.starts - word.end, word.start - self.ends), 0.0)
        nearest = int(np.argmin(distance))
        return self.labels[nearest] if distance[nearest] <= max_distance_s else UNKNOWN_SPEAKER


def speaker_of(word: Word, turns: Annotation, max_distance_s: float = 1.0) -> str:
    return TurnIndex(turns).speaker_of(word, max_distance_s)


def build_utterances(words: list[Word], turns: Annotation, max_pause_s: float = 1.0) -> list[Utterance]:
    """Consecutive words of one speaker form an utterance; a speaker change or a long pause splits."""
    index = TurnIndex(turns)
    utterances: list[Utterance] = []
    current: list[Word] = []
    current_speaker = None
    for word in sorted(words, key=lambda w: w.start):
        speaker = index.speaker_of(word)
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


STAGE = contract.Stage("attribution", backend=contract.fixed("python"), run=build_utterances)
