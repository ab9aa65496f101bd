"""PII redaction: identifiers in transcripts become typed placeholders before anything is written.

``pii_detectors`` labels the identifier words of the whole call; every hit maps back to its
words, so a placeholder keeps their times, and ``silence_spans`` can mute them in audio.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from pipeline.settings import RedactionSettings
from pipeline.records import RedactedSpan, Utterance, Word
from pipeline.stages import contract
from pipeline.stages.text.pii_detectors import EMAIL, TRAILING_PUNCT, label_words


def placeholder(kind: str) -> str:
    return f"[{kind.upper()}]"


def redact_utterances(
    utterances: list[Utterance], settings: RedactionSettings
) -> tuple[list[Utterance], list[RedactedSpan]]:
    """Utterances with identifiers replaced by typed placeholder words, and where they were."""
    if not settings.enabled or not utterances:
        return list(utterances), []
    labels = label_words(utterances, settings)
    if settings.emails:
        _label_email_answers(utterances, labels)
    redacted, spans = [], []
    for u, kinds in zip(utterances, labels):
        if not any(kinds):
            redacted.append(u)
            continue
        words: list[Word] = []
        for a, b, kind in _segments(kinds):
            if kind is None:
                words.extend(u.words[a:b])
                continue
            run = u.words[a:b]
            trail = TRAILING_PUNCT.search(run[-1].text.strip())
            start, end = run[0].start, max(w.end for w in run)
            text = " " + placeholder(kind) + (trail.group() if trail else "")
            words.append(Word(start, end, text, min(w.probability for w in run)))
            spans.append(RedactedSpan(u.utterance_id, kind, start, end))
        redacted.append(replace(u, words=tuple(words)))
    return redacted, spans


# Asked, not mentioned: "it will arrive by email today." "Good. And ..." is no address.
_EMAIL_QUESTION = re.compile(r"[^.!?]*\b(e-?mail|email address)\b[^.!?]*\?", re.IGNORECASE)
_EMAIL_ANSWER_MAX_WORDS = 15
_EMAIL_ANSWER_MAX_GAP_S = 10.0
_ANSWER_LEAD = {"it's", "its", "it", "is", "sure", "yes", "yeah", "okay", "ok", "so", "um", "uh", "that's", "my", "email"}


def _label_email_answers(utterances: list[Utterance], labels: list[list[str | None]]) -> None:
    """A short reply to an e-mail question is an address even when ASR garbles it past
    recognition ("happy dot fox 96 at quickmail dot com" heard as "happy God's Fox 96, that's
    quick, mail God's comes"): its words after the opening ("it's", "sure") are redacted."""
    order = sorted(range(len(utterances)), key=lambda k: utterances[k].start)
    for prev, k in zip(order, order[1:]):
        question, reply = utterances[prev], utterances[k]
        if (
            question.speaker == reply.speaker
            or not _EMAIL_QUESTION.search(question.text)
            or len(reply.words) > _EMAIL_ANSWER_MAX_WORDS
            or reply.start - question.end > _EMAIL_ANSWER_MAX_GAP_S
            or any(labels[k])
        ):
            continue
        first = 0
        while first < len(reply.words) and reply.words[first].text.strip().strip(",.").lower() in _ANSWER_LEAD:
            first += 1
        for w in range(first, len(reply.words)):
            labels[k][w] = EMAIL


def redact_text(text: str, settings: RedactionSettings) -> tuple[str, list[str]]:
    """Free text (reviewers' notes and verdict comments) redacted the same way; the kinds found, in order."""
    tokens = list(re.finditer(r"\S+", text))
    if not settings.enabled or not tokens:
        return text, []
    words = tuple(Word(float(k), k + 0.5, " " + t.group(), 1.0) for k, t in enumerate(tokens))
    kinds = label_words([Utterance(0, "text", 0.0, words[-1].end, words)], settings)[0]
    out, found, cursor = [], [], 0
    for a, b, kind in _segments(kinds):
        if kind is None:
            continue
        trail = TRAILING_PUNCT.search(tokens[b - 1].group())
        out += [text[cursor:tokens[a].start()], placeholder(kind), trail.group() if trail else ""]
        cursor = tokens[b - 1].end()
        found.append(kind)
    out.append(text[cursor:])
    return "".join(out), found


def silence_spans(samples: np.ndarray, sample_rate: int, spans: list[RedactedSpan], fade_s: float = 0.01) -> np.ndarray:
    """A copy with the spans zeroed (time on the last axis: mono (n,) or channels (c, n)). The fades
    lie outside the spans, so nothing of a span stays audible, and avoid clicks at its edges."""
    out = np.array(samples, copy=True)
    n = out.shape[-1]
    fade = max(1, int(round(fade_s * sample_rate)))
    intervals = sorted((max(0, int(np.floor(sp.start * sample_rate))), min(n, int(np.ceil(sp.end * sample_rate))))
                       for sp in spans)
    merged: list[list[int]] = []
    for a, b in intervals:
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    ramp = np.arange(1, fade + 1, dtype=np.float64) / (fade + 1)  # rising, never reaching 1 or 0
    for a, b in merged:
        out[..., a:b] = 0
        lo = max(0, a - fade)
        out[..., lo:a] = (out[..., lo:a] * ramp[::-1][fade - (a - lo):]).astype(out.dtype)
        hi = min(n, b + fade)
        out[..., b:hi] = (out[..., b:hi] * ramp[:hi - b]).astype(out.dtype)
    return out


def _segments(kinds: list[str | None]) -> list[tuple[int, int, str | None]]:
    """Maximal runs of one label as (start, stop, kind)."""
    out, a = [], 0
    for b in range(1, len(kinds) + 1):
        if b == len(kinds) or kinds[b] != kinds[a]:
            out.append((a, b, kinds[a]))
            a = b
    return out


STAGE = contract.Stage("redaction", backend=contract.fixed("python"), run=redact_utterances)
