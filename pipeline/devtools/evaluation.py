"""Scoring against a known truth: DER for diarization, WER for transcripts, roles, redaction.

Used by the tests, ``bench/``, ``callaffect eval`` and the closing numbers. DER comes from
pyannote.metrics (the standard the targets are stated in); WER from jiwer, on text passed
through `normalize_text` on both sides so that spelling conventions are not counted as
recognition errors. `find_leaks` checks a transcript for identifiers planted in a call.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer
from pyannote.core import Annotation, Timeline

# pyannote.metrics and pyannote.database are imported where used: they take about two seconds,
# and the CLI and the synthetic-call generator import this module.


def load_rttm(path: Path | str) -> dict[str, Annotation]:
    """RTTM file -> {uri: Annotation} (pyannote.database's reader; an empty file gives {})."""
    from pyannote.database.util import load_rttm as pyannote_load_rttm

    return pyannote_load_rttm(str(path))


def _single(annotations: dict[str, Annotation], path: Path | str) -> Annotation:
    if len(annotations) > 1:
        raise ValueError(f"{path} holds {len(annotations)} recordings; expected one")
    return next(iter(annotations.values()), Annotation())


def _uem(reference: Annotation, hypothesis: Annotation) -> Timeline:
    """The union of both extents. Explicit: pyannote would approximate the same and warn on every call."""
    extent = reference.get_timeline() | hypothesis.get_timeline()
    return Timeline([extent.extent()]) if extent else Timeline()


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
    from pyannote.metrics.diarization import DiarizationErrorRate

    uem = _uem(reference, hypothesis)
    if not uem:
        return {"der": 0.0, "confusion": 0.0, "missed_detection": 0.0, "false_alarm": 0.0,
                "total": 0.0, "correct": 0.0}
    metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    return _der_components(metric(reference, hypothesis, uem=uem, detailed=True))


def _der_components(detail: dict) -> dict[str, float]:
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
class DiarizationScore:
    """One recording's DER (components in seconds), or the total over several.

    The total's ``der`` is pyannote's accumulated value, total errors over total scored
    speech, not a mean of the files' DERs; its speaker counts are sums over the files.
    """

    uri: str
    der: float
    confusion: float
    missed_detection: float
    false_alarm: float
    total: float
    correct: float
    ref_speakers: int
    hyp_speakers: int
    jer: float | None = None  # Jaccard error rate, when asked for


@dataclass(frozen=True)
class DiarizationReport:
    files: list[DiarizationScore]
    total: DiarizationScore
    collar: float
    skip_overlap: bool


def score_diarization(
    pairs: Iterable[tuple[str, Annotation, Annotation]],
    *,
    collar: float = 0.25,
    skip_overlap: bool = False,
    jer: bool = False,
) -> DiarizationReport:
    """DER per (uri, reference, hypothesis) and in total, each file scored over its own extent.

    ``collar`` is pyannote.metrics' total width (see `diarization_error_rate`).
    """
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    der_metric = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    jer_metric = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap) if jer else None
    files = []
    for uri, reference, hypothesis in pairs:
        uem = _uem(reference, hypothesis)
        counts = dict(ref_speakers=len(reference.labels()), hyp_speakers=len(hypothesis.labels()))
        if not uem:  # nothing said and nothing found: no error, and nothing to accumulate
            files.append(DiarizationScore(uri, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, **counts,
                                          jer=0.0 if jer else None))
            continue
        detail = _der_components(der_metric(reference, hypothesis, uem=uem, detailed=True))
        file_jer = float(jer_metric(reference, hypothesis, uem=uem)) if jer_metric is not None else None
        files.append(DiarizationScore(uri, **detail, **counts, jer=file_jer))
    accumulated = der_metric[:]
    total = DiarizationScore(
        "TOTAL", der=float(abs(der_metric)),
        confusion=float(accumulated["confusion"]), missed_detection=float(accumulated["missed detection"]),
        false_alarm=float(accumulated["false alarm"]), total=float(accumulated["total"]),
        correct=float(accumulated["correct"]),
        ref_speakers=sum(f.ref_speakers for f in files), hyp_speakers=sum(f.hyp_speakers for f in files),
        jer=(float(abs(jer_metric)) if jer_metric.accumulated_["speaker count"] else 0.0)
        if jer_metric is not None else None,
    )
    return DiarizationReport(files, total, collar, skip_overlap)


def pair_rttm_files(reference_paths: Sequence[Path | str],
                    hypothesis_paths: Sequence[Path | str]) -> list[tuple[str, Annotation, Annotation]]:
    """(uri, reference, hypothesis) for each reference recording.

    By uri when every reference uri is among the hypotheses' (a recording the hypothesis file
    leaves out, e.g. with no speech found, must then be named: it is an error, not a silent 1.0);
    otherwise by order when both sides are the same number of files with one recording each
    (the pipeline's ``diarization.rttm`` carries the call id, a reference may carry anything).
    """
    refs = [load_rttm(p) for p in reference_paths]
    hyps = [load_rttm(p) for p in hypothesis_paths]
    ref_all = {uri: a for r in refs for uri, a in r.items()}
    hyp_all = {uri: a for h in hyps for uri, a in h.items()}
    if ref_all and set(ref_all) <= set(hyp_all):
        return [(uri, ref_all[uri], hyp_all[uri]) for uri in ref_all]
    if len(refs) == len(hyps) and all(len(r) <= 1 for r in refs + hyps):
        return [(next(iter(r), Path(rp).stem), _single(r, rp), _single(h, hp))
                for r, h, rp, hp in zip(refs, hyps, reference_paths, hypothesis_paths)]
    missing = sorted(set(ref_all) - set(hyp_all))
    raise ValueError(f"no hypothesis for {', '.join(missing) or 'the references'}: give the same "
                     f"number of single-recording files on both sides, or hypotheses with the same uris")


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
_VTT_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]*)>")


@dataclass(frozen=True)
class VttCue:
    start: float
    end: float
    voice: str | None  # the first ``<v ...>`` tag's name, e.g. "SPEAKER_00 (agent)"
    text: str  # tags removed, entities decoded


def _vtt_seconds(stamp: str) -> float:
    parts = stamp.strip().split(":")  # [hh:]mm:ss.mmm
    return sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))


def read_vtt_cues(path: Path | str) -> list[VttCue]:
    """The cues of a WebVTT file in file order."""
    blocks = re.split(r"\n\s*\n", Path(path).read_text(encoding="utf-8").replace("\r\n", "\n"))
    cues = []
    for block in blocks:
        lines = block.strip().split("\n")
        timing = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if timing is None:  # header, NOTE, STYLE or REGION block
            continue
        start, end = lines[timing].split("-->")
        cue = " ".join(ln.strip() for ln in lines[timing + 1:])
        voice = _VTT_VOICE.search(cue)
        cues.append(VttCue(_vtt_seconds(start), _vtt_seconds(end.split()[0]), voice.group(1).strip() if voice else None,
                           html.unescape(_VTT_TAG.sub("", cue)).strip()))
    return cues


def read_vtt_text(path: Path | str) -> str:
    """The cue text of a WebVTT file in order, voice (``<v Speaker>``) and other tags removed."""
    return " ".join(c.text for c in read_vtt_cues(path) if c.text)


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


@dataclass(frozen=True)
class WerScore:
    """Word errors of one transcript (or a total over several), after `normalize_text`."""

    name: str
    ref_words: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """errors / reference words; with no reference words, 0.0 if nothing was said either, else 1.0."""
        if not self.ref_words:
            return 0.0 if not self.errors else 1.0
        return self.errors / self.ref_words


def word_error_counts(reference: str, hypothesis: str, name: str = "") -> WerScore:
    """Substitutions, deletions and insertions of hypothesis against reference, both normalised."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:  # jiwer refuses an empty reference
        return WerScore(name, 0, 0, 0, len(hyp.split()))
    out = jiwer.process_words(ref, hyp)
    return WerScore(name, len(ref.split()), out.substitutions, out.deletions, out.insertions)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of hypothesis against reference after `normalize_text` on both.

    An empty (normalised) reference scores 0.0 against an empty hypothesis and 1.0 otherwise,
    where jiwer would raise.
    """
    return word_error_counts(reference, hypothesis).wer


def _outside(start: float, end: float, spans: Sequence[tuple[float, float]]) -> bool:
    return not any(start < b and a < end for a, b in spans)


def wer_counts_from_files(reference_stm: Path | str, hypothesis_vtt: Path | str, *,
                          exclude: Sequence[tuple[float, float]] = (), name: str = "") -> WerScore:
    """Word errors of a WebVTT transcript against an STM reference, over the whole call.

    ``exclude``: (start, end) spans left out on both sides (reference lines that overlap one,
    cues whose midpoint falls in one), e.g. turns whose words a redaction stage replaces.
    """
    entries = [e for e in load_stm(reference_stm) if _outside(e.start, e.end, exclude)]
    cues = [c for c in read_vtt_cues(hypothesis_vtt)
            if _outside((c.start + c.end) / 2, (c.start + c.end) / 2 + 1e-6, exclude)]
    return word_error_counts(stm_text(entries), " ".join(c.text for c in cues if c.text), name)


def wer_from_files(reference_stm: Path | str, hypothesis_vtt: Path | str, *,
                   exclude: Sequence[tuple[float, float]] = ()) -> float:
    """WER of a WebVTT transcript against an STM reference, over the whole call."""
    return wer_counts_from_files(reference_stm, hypothesis_vtt, exclude=exclude).wer


@dataclass(frozen=True)
class AsrReport:
    files: list[WerScore]
    total: WerScore  # summed counts: total errors over total reference words


def score_asr(pairs: Iterable[tuple[Path | str, Path | str]]) -> AsrReport:
    """WER per (reference STM, hypothesis VTT) pair, named by the STM's file id, and in total."""
    files = []
    for ref, hyp in pairs:
        entries = load_stm(ref)
        files.append(wer_counts_from_files(ref, hyp, name=entries[0].file if entries else Path(ref).stem))
    total = WerScore("TOTAL", *(sum(getattr(f, k) for f in files)
                                for k in ("ref_words", "substitutions", "deletions", "insertions")))
    return AsrReport(files, total)


# ----- speakers and roles --------------------------------------------------------------------

def map_speakers(reference: Annotation, hypothesis: Annotation) -> dict[str, str]:
    """Each hypothesis label -> the reference label it overlaps longest (absent if it overlaps none)."""
    overlap = hypothesis * reference  # (hypothesis labels, reference labels) seconds together
    ref_labels = reference.labels()
    return {h: ref_labels[int(row.argmax())] for h, row in zip(hypothesis.labels(), overlap)
            if row.size and row.max() > 0}


def roles_right(reference: Annotation, hypothesis: Annotation, hypothesis_roles: dict[str, str],
                roles: Sequence[str] = ("agent", "customer")) -> bool:
    """True when, for each role, some hypothesis speaker maps to the reference speaker labelled
    with it (`map_speakers`) and every one that does carries that role.

    The reference labels are the roles themselves (as in the synthetic calls' RTTM).
    """
    mapping = map_speakers(reference, hypothesis)
    for role in roles:
        mapped = [h for h, r in mapping.items() if r == role]
        if not mapped or any(hypothesis_roles.get(h) != role for h in mapped):
            return False
    return True


# ----- planted identifiers -------------------------------------------------------------------

_NUMBER_WORDS = {
    **{w: i for i, w in enumerate(_ONES)}, "oh": 0,
    **{w: 10 * i for i, w in enumerate(_TENS) if i >= 2},
    **{w: i + 1 for i, w in enumerate(
        ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
         "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth").split())},
    **{f"{w[:-1]}ieth": 10 * i for i, w in enumerate(_TENS) if i >= 2},
}
_TOKEN = re.compile(r"\d+(?:st|nd|rd|th)?|[a-z]+")
_MONTHS = ("january february march april may june july august september october november "
           "december").split()


def _tokens(text: str) -> list[str]:
    """Lower-case words and numbers; number words become digits, a tens word taking a following
    unit ("eighty four" -> "84"), ordinals lose their suffix ("12th", "twelfth" -> "12")."""
    raw = _TOKEN.findall(text.lower())
    out: list[str] = []
    i = 0
    while i < len(raw):
        word = raw[i]
        if word[0].isdigit():
            out.append(re.sub(r"\D", "", word))
        elif word in _NUMBER_WORDS:
            value = _NUMBER_WORDS[word]
            nxt = raw[i + 1] if i + 1 < len(raw) else ""
            if value >= 20 and value % 10 == 0 and _NUMBER_WORDS.get(nxt, 10) < 10:
                value += _NUMBER_WORDS[nxt]
                i += 1
            out.append(str(value))
        else:
            out.append(word)
        i += 1
    return out


def _digit_runs(tokens: list[str]) -> list[str]:
    """Numbers said one after another, joined: "four five three nine, 1488" -> "45391488"."""
    runs, current = [], ""
    for token in tokens:
        if token.isdigit():
            current += token
        elif current:
            runs.append(current)
            current = ""
    return runs + ([current] if current else [])


# A run of this many consecutive digits of a card or phone number counts as a leak; fewer (e.g.
# the last four digits a receipt may show) does not.
LEAK_MIN_DIGITS = 6


def identifier_leaked(text: str, kind: str, value: str) -> bool:
    """Whether ``text`` still carries the planted identifier, written any way a recogniser might.

    - card, phone (``value`` digits): any LEAK_MIN_DIGITS consecutive digits of it, as digits or
      number words, separators ignored;
    - email (``value`` the address): the local part's letters ("sunny.fox84" -> "sunnyfox") or
      the domain's first label, whether written as an address or spelled out ("sunny dot fox");
    - dob (``value`` YYYY-MM-DD): the year, or the month's name together with the day.
    """
    tokens = _tokens(text)
    if kind in ("card", "phone"):
        n = min(LEAK_MIN_DIGITS, len(value))
        pieces = {value[i:i + n] for i in range(len(value) - n + 1)}
        return any(piece in run for run in _digit_runs(tokens) for piece in pieces)
    if kind == "email":
        local, _, domain = value.lower().partition("@")
        letters = "".join(t for t in tokens if t not in ("dot", "at") and not t.isdigit())
        return any(part and part in letters for part in (re.sub(r"[^a-z]", "", local),
                                                         re.sub(r"[^a-z]", "", domain.split(".")[0])))
    if kind == "dob":
        year, month, day = (int(x) for x in value.split("-"))
        return (any(str(year) in run for run in _digit_runs(tokens))
                or (_MONTHS[month - 1] in tokens and str(day) in tokens))
    raise ValueError(f"unknown identifier kind {kind!r}")


@dataclass(frozen=True)
class Leak:
    kind: str
    value: str
    source: str  # where it was found, e.g. "transcript.vtt" or "utterances.text"
    text: str


def find_leaks(texts: Iterable[tuple[str, str]], planted: Iterable[dict]) -> list[Leak]:
    """Every (source, text) that still carries a planted identifier.

    ``planted``: dicts with ``kind`` and ``value``, as in a synthetic call's ``.pii.json``.
    Each text is checked on its own (a cue, an utterance): digits are not joined across them.
    """
    planted = list(planted)
    return [Leak(p["kind"], p["value"], source, text) for source, text in texts for p in planted
            if identifier_leaked(text, p["kind"], p["value"])]
