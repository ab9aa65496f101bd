"""Scoring against a known truth: DER for diarization, WER for transcripts.

Used by the tests, ``bench/`` and the closing numbers. DER comes from pyannote.metrics (the
standard the targets are stated in); WER from jiwer, on text passed through `normalize_text`
on both sides so that spelling conventions are not counted as recognition errors.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import jiwer
from pyannote.core import Annotation, Timeline
from pyannote.database.util import load_rttm as _pyannote_load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate


def load_rttm(path: Path | str) -> dict[str, Annotation]:
    """RTTM file -> {uri: Annotation} (pyannote.database's reader; an empty file gives {})."""
    return _pyannote_load_rttm(str(path))


def annotation_to_rttm(annotation: Annotation, uri: str) -> str:
    """RTTM text for an annotation, under the given uri whatever the annotation's own."""
    renamed = annotation.copy()
    renamed.uri = uri
    return renamed.to_rttm()


def _single(annotations: dict[str, Annotation], path: Path | str) -> Annotation:
    if len(annotations) > 1:
        raise ValueError(f"{path} holds {len(annotations)} recordings; expected one")
    return next(iter(annotations.values()), Annotation())


def diarization_error_rate(
    reference: Annotation,
    hypothesis: Annotation,
    collar: float = 0.25,
    skip_overlap: bool = False,
) -> dict[str, float]:
    """DER and its components, in seconds, over the union of both extents.

    ``collar`` has pyannote.metrics' meaning: the *total* width of the unscored region centred
    on each reference boundary (0.25 -> ±0.125 s), i.e. half of NIST md-eval's ``-c``.

    Keys: der, confusion, missed_detection, false_alarm, total (scored reference speech),
    correct. Speaker labels need not match: the metric maps them optimally.
    """
    extent = reference.get_timeline() | hypothesis.get_timeline()
    if not extent:
        return {"der": 0.0, "confusion": 0.0, "missed_detection": 0.0, "false_alarm": 0.0,
                "total": 0.0, "correct": 0.0}
    # An explicit UEM: pyannote would approximate the same and warn on every call.
    uem = Timeline([extent.extent()])
    metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    detail = metric(reference, hypothesis, uem=uem, detailed=True)
    return {
        "der": float(detail["diarization error rate"]),
        "confusion": float(detail["confusion"]),
        "missed_detection": float(detail["missed detection"]),
        "false_alarm": float(detail["false alarm"]),
        "total": float(detail["total"]),
        "correct": float(detail["correct"]),
    }


def der_from_files(reference_rttm: Path | str, hypothesis_rttm: Path | str, *,
                   collar: float = 0.25, skip_overlap: bool = False) -> dict[str, float]:
    """DER between two single-recording RTTM files; their uris need not agree."""
    reference = _single(load_rttm(reference_rttm), reference_rttm)
    hypothesis = _single(load_rttm(hypothesis_rttm), hypothesis_rttm)
    return diarization_error_rate(reference, hypothesis, collar=collar, skip_overlap=skip_overlap)


@dataclass(frozen=True)
class StmEntry:
    file: str
    channel: str
    speaker: str
    start: float
    end: float
    text: str


def load_stm(path: Path | str) -> list[StmEntry]:
    """STM lines ``<file> <channel> <speaker> <start> <end> [<label>] <transcript>``, by start time.

    ``;;`` comment lines and an optional ``<o,f0,male>``-style label field are skipped.
    """
    entries = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith(";;"):
            continue
        fields = line.split(maxsplit=5)
        text = fields[5] if len(fields) > 5 else ""
        if text.startswith("<"):
            text = text.split(">", 1)[1].strip() if ">" in text else text
        entries.append(StmEntry(fields[0], fields[1], fields[2], float(fields[3]), float(fields[4]), text))
    return sorted(entries, key=lambda e: (e.start, e.end))


def stm_text(entries: list[StmEntry]) -> str:
    """The whole reference transcript, utterances in time order."""
    return " ".join(e.text for e in sorted(entries, key=lambda e: (e.start, e.end)))


_VTT_TAG = re.compile(r"<[^>]*>")


def read_vtt_text(path: Path | str) -> str:
    """The cue text of a WebVTT file in order, voice (``<v Speaker>``) and other tags removed."""
    blocks = re.split(r"\n\s*\n", Path(path).read_text(encoding="utf-8").replace("\r\n", "\n"))
    texts = []
    for block in blocks:
        lines = block.strip().split("\n")
        timing = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if timing is None:  # header, NOTE, STYLE or REGION block
            continue
        cue = " ".join(ln.strip() for ln in lines[timing + 1:])
        texts.append(html.unescape(_VTT_TAG.sub("", cue)).strip())
    return " ".join(t for t in texts if t)


# ----- text normalisation -------------------------------------------------------------------

_CONTRACTIONS = {
    "can't": "can not", "cannot": "can not", "won't": "will not", "shan't": "shall not",
    "let's": "let us", "ain't": "is not",
    # 's after these is "is"; elsewhere it is a possessive and only loses its apostrophe.
    **{f"{w}'s": f"{w} is" for w in ("it", "that", "what", "there", "here", "he", "she", "who",
                                      "where", "how", "when", "why")},
}
_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ve", " have"), ("'ll", " will"), ("'m", " am"),
             ("'d", " would"))
# Spellings a recogniser and a script disagree on that are the same words.
_SPELLINGS = {"ok": "okay", "alright": "all right", "mr": "mister", "mrs": "missus",
              "dr": "doctor", "mm-hmm": "mhm", "uh-huh": "uhhuh"}

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"), (100, "hundred"))


def number_to_words(n: int) -> str:
    """Cardinal English for a non-negative integer: 2024 -> 'two thousand twenty four'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in _SCALES:
        if n >= size:
            head, rest = divmod(n, size)
            return f"{number_to_words(head)} {name}" + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def normalize_text(text: str) -> str:
    """Text as compared for WER. In order:

    1. lower case; curly apostrophes become straight ones;
    2. ``$N`` becomes ``N dollars``, ``%`` ``percent``, ``&`` ``and``;
    3. contractions are expanded (``can't`` -> ``can not``, ``I'm`` -> ``i am``, ``it's`` ->
       ``it is``; any other ``'s`` just loses its apostrophe);
    4. digit groups (``1,000`` included) become cardinal words; ``3rd`` becomes ``three rd``;
    5. hyphens and slashes split words; other punctuation is removed;
    6. a few spelling variants are unified (``ok`` -> ``okay``, ``alright`` -> ``all right``,
       ``mr`` -> ``mister``); whitespace is collapsed.
    """
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\$\s?(\d[\d,]*)", r"\1 dollars", text)
    text = text.replace("%", " percent").replace("&", " and ")
    words = []
    for word in text.split():
        bare = word.strip(".,!?;:\"()[]")
        if bare in _SPELLINGS:
            word = _SPELLINGS[bare]
        elif bare in _CONTRACTIONS:
            word = _CONTRACTIONS[bare]
        else:
            for suffix, expansion in _SUFFIXES:
                if bare.endswith(suffix) and len(bare) > len(suffix):
                    word = bare[: -len(suffix)] + expansion
                    break
        words.append(word)
    text = " ".join(words)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"\d+", lambda m: f" {number_to_words(int(m.group()))} ", text)
    text = re.sub(r"[-/]", " ", text)
    text = re.sub(r"[^a-z0-9' ]", " ", text).replace("'", "")
    return " ".join(_SPELLINGS.get(w, w) for w in text.split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of hypothesis against reference after `normalize_text` on both.

    An empty (normalised) reference scores 0.0 against an empty hypothesis and 1.0 otherwise,
    where jiwer would raise.
    """
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))


def wer_from_files(reference_stm: Path | str, hypothesis_vtt: Path | str) -> float:
    """WER of a WebVTT transcript against an STM reference, over the whole call."""
    return word_error_rate(stm_text(load_stm(reference_stm)), read_vtt_text(hypothesis_vtt))
