"""Text affect: utterance text -> valence in [-1, 1] with VADER's lexicon (ships in the package)."""

from __future__ import annotations

from pipeline.records import TextValence, Utterance
from pipeline.stages import contract

import functools




@functools.lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def model_version() -> str:
    from importlib.metadata import version

    return f"vaderSentiment=={version('vaderSentiment')}"


def score_utterances(utterances: list[Utterance]) -> list[TextValence]:
    analyzer = _analyzer()
    out = []
    for u in utterances:
        scores = analyzer.polarity_scores(u.text)
        # More words and more polar words make the estimate firmer; ASR doubt makes it softer.
        n_words = len(u.words)
        lexical = 1.0 - scores["neu"]
        confidence = min(1.0, n_words / 8.0) * (0.4 + 0.6 * min(1.0, 2.0 * lexical)) * u.asr_confidence
        out.append(TextValence(u.utterance_id, float(scores["compound"]), round(float(confidence), 4)))
    return out


STAGE = contract.Stage(
    "text_affect", backend=contract.fixed("vader"), run=score_utterances,
    model_key="text_affect", model_version=lambda settings: model_version(),
)
