"""The PII detectors behind redaction: which words of a call's utterances are identifiers.

The detectors work on word streams, not on joined text: an identifier split across ASR words
(" 4111," " 1111,"), spoken ("four one one one", "double oh seven"), or spread over several
utterances (a card read in groups while the other party says "mm-hmm") is still one run, and
every hit maps back to the words. Each utterance is read twice: in the time-ordered stream of
the whole call, and in its speaker's own stream (so the other party's interjections do not
split a number read in groups). Every step is a single pass with bounded look-around, so the
cost is linear in the number of words.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from datetime import date

from pipeline.records import Utterance, Word
from pipeline.settings import RedactionSettings
from pipeline.stages.text.person_names import find_names

CARD, DOB, EMAIL, PHONE, NUMBER, NAME = "card_number", "date_of_birth", "email", "phone", "number", "name"
# When two detectors claim a word, the more specific kind names the placeholder.
_PRIORITY = {NAME: 0, NUMBER: 1, PHONE: 2, EMAIL: 3, DOB: 4, CARD: 5}

# Parts of one identifier more than this far apart in time are not joined (people pause
# between groups of a card number, but not for this long).
_MAX_JOIN_GAP_S = 8.0
_CONTEXT_WORDS = 8  # how far back a "phone" / "account" cue is looked for
_DOB_SKIP_WORDS = 6  # words between a birth cue and the date ("... is, uh, the ...")
_DOB_MAX_WORDS = 12  # longest spoken date ("the twenty third of march nineteen eighty five")
_DOB_ANSWER_WORDS = 25  # a date this soon after a birth cue answers it ("...date of birth?" "It's ...")
_DOB_ANSWER_S = 15.0
_MIN_CALLER_AGE = 16  # a full date in a year at least this long ago is read as a birth date
_EMAIL_WINDOW_WORDS = 12  # words either side of "@" / "at" an address may span
_EMAIL_BACK_WORDS = 6  # spoken local parts: "john smith eighty five at ..."


# ---------------------------------------------------------------- lexicon

_UNITS = {"zero": 0, "oh": 0, "o": 0, "nought": 0, "naught": 0, "one": 1, "two": 2, "three": 3, "four": 4,
          "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 2, "thirty": 3, "forty": 4, "fourty": 4, "fifty": 5, "sixty": 6, "seventy": 7,
         "eighty": 8, "ninety": 9}
_REPEAT = {"double": 2, "triple": 3, "treble": 3}
_ZEROS = {"oh", "o"}  # zero only next to other digits: alone they are the interjection / letter
_ORDINALS = {"first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
             "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
             "eighteenth", "nineteenth", "twentieth", "thirtieth"}
_MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
           "nov", "dec"}
_NUMBER_WORDS = set(_UNITS) | set(_TEENS) | set(_TENS) | {"hundred", "thousand"}

# Words that may sit between the parts of one digit run without ending it: hesitations, spoken
# separators, the acknowledgements of a listener when diarization puts them in the same stream,
# and a "double" that a hesitation kept from its digit ("double, uh, two").
_HESITATIONS = {"uh", "um", "umm", "er", "erm", "ah", "eh", "hmm"}
_JOINERS = _HESITATIONS | {"mm", "mhm", "mm-hmm", "uh-huh", "okay", "ok", "yep", "yeah", "yes", "right", "dash",
                           "hyphen", "space", "double", "triple", "treble"}
_CURRENCY_WORDS = {"dollars", "dollar", "bucks", "pounds", "pound", "quid", "euros", "euro", "cents", "pence",
                   "percent", "grand", "yen", "rupees"}
# Card data read after the number: the security code and expiry are redacted as part of the card.
_CARD_DATA_CUES = {"cvv", "cvv2", "cvc", "cv2", "csc", "expiry", "expiration", "expires", "exp"}
_VERSION_CUES = {"version", "v", "build", "release", "firmware", "model"}
# Cues before a run that name what it is when its shape does not.
_NUMBER_CUES = {"account", "acct", "ssn", "social", "security", "reference", "ref", "policy", "member",
                "membership", "order", "ticket", "case", "claim", "id", "pin", "passport", "licence",
                "license", "routing", "sort", "iban", "tracking", "confirmation", "invoice", "serial"}
_PHONE_CUES = {"phone", "telephone", "mobile", "cell", "cellphone", "landline", "call", "ring", "text",
               "reach", "fax", "extension", "ext", "whatsapp", "dial"}
_DOB_CUES = {"dob", "d.o.b", "birth", "birthday", "birthday's", "birthdate", "born", "date-of-birth", "birth-date",
             "dob's"}
_DOB_SKIP = {"is", "was", "on", "in", "the", "of", "my", "it's", "its", "it", "date", "that's", "that", "i",
             "i'm", "i've", "so", "yeah", "yes", "okay", "ok", "actually", "uh", "um", "er", "erm", "been",
             "be", "me", "it'd", "would", "back", "when", "where"}
# A spoken "<word> at <domain> dot com" is not an address when <word> is one of these ("I work
# at amazon dot com", "email us at ...").
_EMAIL_STOPWORDS = {"i", "me", "you", "we", "us", "he", "him", "she", "her", "they", "them", "it", "is", "am",
                    "are", "was", "were", "be", "been", "work", "works", "worked", "working", "live", "lives",
                    "lived", "living", "look", "looking", "looked", "stay", "staying", "meet", "call", "email",
                    "e-mail", "mail", "address", "my", "your", "our", "their", "his", "the", "a", "an", "this",
                    "that", "here", "there", "home", "office", "go", "went", "going", "get", "got", "online",
                    "website", "site", "shop", "shopped", "buy", "bought", "ordered", "order", "find", "found",
                    "visit", "visited", "sign", "signed", "log", "logged", "up", "in", "on", "and", "or", "but",
                    "it's", "its", "so", "to", "contact", "reach", "write", "message", "send",
                    "sent", "account", "registered", "listed", "available", "anytime", "now", "only", "i'm",
                    "i've", "i'll", "we're", "we'll", "you're", "you'll", "they're", "he's", "she's", "it'll",
                    "that's", "there's", "what's", "who's"}
_EMAIL_SPOKEN = {"at": "@", "dot": ".", "period": ".", "point": ".", "underscore": "_", "dash": "-",
                 "hyphen": "-"}
_TLDS = ("com|net|org|edu|gov|mil|int|info|biz|io|co|uk|us|ca|au|nz|ie|de|fr|es|it|nl|be|ch|se|dk|fi|"
         "pl|pt|jp|cn|in|br|mx|za|ru|eu|me|ai|app|dev|email|online|xyz|tv")

_EDGE = "\"'“”‘’()[]{}<>,.;:!?…*"
_SENTENCE_PUNCT = ",.;:!?…"
_QUOTES = "\"'“”‘’"
TRAILING_PUNCT = re.compile(r"[.,;:!?…]+$")

# Written tokens that carry digits but are not identifiers: dates (the DOB detector judges them),
# times, ordinals and quantities with units, money.
_DATE_RE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](?:\d{2}|\d{4})|(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})")
_TIME_RE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?:am|pm|a\.m|p\.m)?")
_SUFFIXED_RE = re.compile(
    r"\d{1,4}(?:st|nd|rd|th|s|am|pm|k|m|g|gb|mb|tb|kb|kg|km|cm|mm|ml|lb|lbs|p|x|h|hr|hrs|min|mins|ish)")
_ORDINAL_RE = re.compile(r"\d{1,2}(?:st|nd|rd|th)")

# Phone formats, over the run's shape (digits as "d", separators and word gaps as "-").
_PHONE_SHAPES = re.compile(
    r"(?:\+?d-?)?(?:\(ddd\)-?|ddd-)ddd-dddd"  # NANP: (555) 123-4567, 1-800-555-1234
    r"|ddd-dddd"  # local seven digits
    r"|\+d{1,3}(?:-?\(?d{1,5}\)?)+"  # international: +44 20 7946 0958
)
_TRUNK_SHAPE = re.compile(r"\(?d{2,5}\)?-d{3,4}-?d{3,4}")  # after a leading 0: 020 7946 0958, 07700 900123
_EMAIL_WRITTEN = re.compile(
    r"(?<![a-z0-9._%+-])[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}(?![a-z0-9])")
# Spoken or split by the ASR: separators may stand alone ("john . smith @ example . com"); the
# top-level domain must then be a known one, or "at the office dot" would be an address.
_EMAIL_SPACED = re.compile(
    r"(?<![a-z0-9._%+-])[a-z0-9_%+-]+(?: ?[._-] ?[a-z0-9_%+-]+)* ?@ ?"
    rf"[a-z0-9-]+(?: ?\. ?[a-z0-9-]+)* ?\. ?(?:{_TLDS})(?![a-z0-9])")


# ---------------------------------------------------------------- per-word features

@dataclass(frozen=True, slots=True)
class _Lex:
    """What one ASR word says on its own (cached: a call repeats few distinct words)."""

    plain: str  # lower-case, edge punctuation stripped
    joiner: bool  # may sit inside a digit run: a hesitation, "mm-hmm", a lone "-" the ASR split off
    written: str | None  # digits of a written number that may be part of an identifier
    number_words: tuple[str, ...]  # the number words it consists of ("forty-one"), else ()
    shape: str  # the written form, digits as "d" (phone formats)
    email: str  # the e-mail reading: "at" -> "@", "dot" -> "."
    date_part: bool  # can be a piece of a date: month, ordinal, number, numeric date
    month: bool
    numeric_date: bool
    clause_end: bool  # sentence punctuation attached: a spoken local part does not reach past it


def _written(core: str) -> tuple[str | None, bool]:
    """(digits, is_date) of a written token that contains a digit."""
    if _TIME_RE.fullmatch(core) or _SUFFIXED_RE.fullmatch(core):
        return None, False
    date = _DATE_RE.fullmatch(core)
    if date and _plausible_date(date):
        return None, True
    digits = re.sub(r"\D", "", core)
    if (core[0] in "$£€¥" or core.endswith("%")) and len(digits) < 13:
        return None, False
    return digits, False


def _plausible_date(m: re.Match) -> bool:
    a, b = (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(4)), int(m.group(5)))
    return 1 <= min(a, b) and (max(a, b) <= 12 or (min(a, b) <= 12 and max(a, b) <= 31))


@functools.lru_cache(maxsize=1 << 16)
def _lexical(text: str) -> _Lex:
    raw = text.strip()
    low = raw.lower()
    plain = low.strip(_EDGE)
    core = low.strip(_QUOTES + _SENTENCE_PUNCT)
    pieces = tuple(plain.split("-"))  # "forty-one", "double-oh": one rule set reads both forms
    written, numeric_date, number_words = None, False, ()
    if any(c.isdigit() for c in core):
        written, numeric_date = _written(core)
    elif all(p in _NUMBER_WORDS or p in _REPEAT for p in pieces):
        interjection = raw[:1].isupper() and plain in _ZEROS and raw[-1:] in ",!."  # "Oh, I see"
        number_words = () if interjection else pieces
    return _Lex(
        plain=plain,
        joiner=plain in _JOINERS or not any(c.isalnum() for c in plain),
        written=written,
        number_words=number_words,
        shape=re.sub(r"[.,/ ]", "-", re.sub(r"\d", "d", core)),
        email=_EMAIL_SPOKEN.get(plain) or re.sub(r"[^a-z0-9._%+@-]", "~", plain),
        date_part=bool(core) and (numeric_date or written is not None or bool(_ORDINAL_RE.fullmatch(core))
                                  or all(p in _MONTHS or p in _ORDINALS or p in _NUMBER_WORDS or p in _REPEAT
                                         for p in pieces)),
        month=plain in _MONTHS,
        numeric_date=numeric_date,
        clause_end=raw[-1:] in _SENTENCE_PUNCT,
    )


def _digits(lex: list[_Lex]) -> tuple[list[str | None], list[bool]]:
    """Per word of one utterance: the digits it adds to a digit run (None: not part of one), and
    whether they were spoken. Number words are read with their neighbours."""
    digits: list[str | None] = [x.written for x in lex]
    spoken = [False] * len(lex)
    parts = [(i, p) for i, x in enumerate(lex) for p in x.number_words]
    written = {i: d for i, d in enumerate(digits) if d is not None}
    for i, value in _resolve_spoken(parts, written).items():
        digits[i], spoken[i] = value, True
    return digits, spoken


def _resolve_spoken(parts: list[tuple[int, str]], written: dict[int, str]) -> dict[int, str]:
    """Number words -> digits, digit by digit as people read identifiers: "forty one" -> 41,
    "nineteen oh five" -> 1905, "double four" -> 44, "eight hundred" -> 800."""
    n = len(parts)

    def word_at(k: int) -> int | None:
        return parts[k][0] if 0 <= k < n else None

    def adjacent(k: int, step: int) -> bool:  # the neighbouring part is in the same or the next word
        j = word_at(k + step)
        return j is not None and abs(j - parts[k][0]) <= 1

    def single_digit_next(k: int) -> str | None:
        if adjacent(k, 1) and parts[k + 1][1] in _UNITS:
            return str(_UNITS[parts[k + 1][1]])
        nxt = parts[k][0] + 1
        if k + 1 >= n or parts[k + 1][0] != nxt:  # a written single digit: "double 4"
            if len(written.get(nxt, "")) == 1:
                return written[nxt]
        return None

    def digit_neighbour(k: int) -> bool:
        i = parts[k][0]
        return any(adjacent(k, s) or (i + s) in written for s in (-1, 1))

    out: dict[int, list[str]] = {}
    for k, (i, p) in enumerate(parts):
        if p in _UNITS:
            value = None if p in _ZEROS and not digit_neighbour(k) else str(_UNITS[p])
        elif p in _TEENS:
            value = str(_TEENS[p])
        elif p in _TENS:
            follows_unit = adjacent(k, 1) and _UNITS.get(parts[k + 1][1], 0) > 0
            value = str(_TENS[p]) if follows_unit else f"{_TENS[p]}0"
        elif p == "hundred":
            prev = parts[k - 1][1] if adjacent(k, -1) else ""
            value = "00" if _UNITS.get(prev, 0) > 0 or prev in _TEENS else None
        elif p in _REPEAT:
            digit = single_digit_next(k)
            value = digit * (_REPEAT[p] - 1) if digit is not None else None
        else:  # "thousand": amounts, not identifiers
            value = None
        out.setdefault(i, []).append(value)
    return {i: "".join(values) for i, values in out.items() if all(v is not None for v in values)}


# ---------------------------------------------------------------- detectors

@dataclass(slots=True)
class _Stream:
    """One reading order over the call's words: (utterance index, word index) pairs."""

    keys: list[tuple[int, int]]
    lex: list[_Lex]
    digits: list[str | None]
    spoken: list[bool]
    words: list[Word]

    def gap(self, a: int, b: int) -> float:
        return self.words[b].start - self.words[a].end


def _digit_runs(s: _Stream, settings: RedactionSettings) -> list[tuple[int, int, str]]:
    """Card, phone and long-number runs as (first, last, kind) stream positions."""
    hits = []
    n, i = len(s.keys), 0
    while i < n:
        if s.digits[i] is None:
            i += 1
            continue
        start = end = i
        j = i + 1
        while j < n and s.gap(j - 1, j) <= _MAX_JOIN_GAP_S:
            if s.digits[j] is not None:
                end = j
            elif not s.lex[j].joiner:
                break
            j += 1
        if start > 0 and s.lex[start - 1].plain == "plus":  # spoken "plus four four ..."
            start -= 1
        kind = _classify_run(s, start, end, settings)
        if kind:
            hits.append((start, end, kind))
        i = end + 1
    return hits


def _classify_run(s: _Stream, start: int, end: int, settings: RedactionSettings) -> str | None:
    groups = [s.digits[k] for k in range(start, end + 1) if s.digits[k] is not None]
    digits = "".join(groups)
    n = len(digits)
    spoken = any(s.spoken[k] for k in range(start, end + 1))
    if settings.card_numbers and (_card_like(groups) or (n >= 3 and _card_data_cue(s, start))):
        return CARD
    if _not_an_identifier(s, start, end, groups):
        return None
    if settings.phone_numbers and 7 <= n <= 15:
        cue = _cue_before(s, start)
        if cue == PHONE or (cue is None and (spoken or _phone_shape(s, start, end, digits))):
            return PHONE
    if settings.long_digit_runs and n >= settings.long_digit_runs:
        return NUMBER
    return None


def _luhn(digits: str) -> bool:
    total = 0
    for k, c in enumerate(reversed(digits)):
        d = int(c) * (2 if k % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card_like(groups: list[str]) -> bool:
    """13-19 digits passing Luhn; a trailing group of up to 4 digits (CVV, expiry read straight
    after) may be left over. Leading zeros ("oh" said first) do not change the Luhn sum."""
    digits = "".join(groups)
    if 13 <= len(digits) <= 19 and _luhn(digits):
        return True
    cut = len(digits)
    for g in reversed(groups):
        cut -= len(g)
        if len(digits) - cut > 4:
            return False
        if 13 <= cut <= 19 and _luhn(digits[:cut]):
            return True
    return False


def _not_an_identifier(s: _Stream, start: int, end: int, groups: list[str]) -> bool:
    """Amounts, versions and years in a row: digit runs that look long but name nobody."""
    if len(groups) == 1 and end + 1 < len(s.keys) and s.lex[end + 1].plain in _CURRENCY_WORDS:
        return True  # "1,250,000 dollars"
    if (len(groups) == 1 and len(groups[0].rstrip("0")) <= 3 and groups[0].endswith("000")
            and re.fullmatch(r"d{1,3}(?:-ddd)+", s.lex[end].shape) and _cue_before(s, start) is None):
        return True  # a round amount in Whisper's thousands separators: "100,000 points", "1,250,000"
    if start > 0 and s.lex[start - 1].plain in _VERSION_CUES:
        return True  # "version 10.0.19045"
    # Years in a row, each its own word(s): "2019-2020", "2022, 2023, 2024", "twenty nineteen, twenty twenty".
    digits = "".join(groups)
    years = [int(digits[k:k + 4]) for k in range(0, len(digits), 4)]
    if len(digits) < 8 or len(digits) % 4 or not all(1900 <= y <= 2099 for y in years):
        return False
    bounds, total = set(), 0
    for g in groups:
        total += len(g)
        bounds.add(total)
    return len(groups) == 1 and "-" in s.lex[end].shape or all(k in bounds for k in range(4, len(digits), 4))


def _card_data_cue(s: _Stream, start: int) -> bool:
    """"CVV one two three", "expiry oh three twenty six", "the security code is 123"."""
    for k in range(start - 1, max(-1, start - 5), -1):
        plain = s.lex[k].plain
        if plain in _CARD_DATA_CUES or (plain == "code" and k > 0 and s.lex[k - 1].plain == "security"):
            return True
    return False


def _cue_before(s: _Stream, start: int) -> str | None:
    for k in range(start - 1, max(-1, start - 1 - _CONTEXT_WORDS), -1):
        plain = s.lex[k].plain
        if plain in _PHONE_CUES:
            return PHONE
        if plain in _NUMBER_CUES:
            return NUMBER
    return None


def _phone_shape(s: _Stream, start: int, end: int, digits: str) -> bool:
    shape = "-".join(s.lex[k].shape for k in range(start, end + 1) if s.digits[k] is not None)
    shape = re.sub(r"-{2,}", "-", shape).strip("-")
    return bool(_PHONE_SHAPES.fullmatch(shape) or (digits[0] == "0" and _TRUNK_SHAPE.fullmatch(shape)))


def _emails(s: _Stream) -> list[tuple[int, int, str]]:
    forms = [f.email for f in s.lex]
    offsets, pos = [], 0
    for form in forms:
        offsets.append(pos)
        pos += len(form) + 1
    text = " ".join(forms)
    hits = []
    for k, form in enumerate(forms):
        if "@" not in form:
            continue
        at = offsets[k] + form.index("@")
        lo = offsets[max(0, k - _EMAIL_WINDOW_WORDS)]
        hi_word = min(len(forms) - 1, k + _EMAIL_WINDOW_WORDS)
        hi = offsets[hi_word] + len(forms[hi_word])
        for pattern in (_EMAIL_WRITTEN, _EMAIL_SPACED):
            for m in pattern.finditer(text, lo, hi):
                if not m.start() <= at < m.end():
                    continue
                first = bisect.bisect_right(offsets, m.start()) - 1
                last = bisect.bisect_right(offsets, m.end() - 1) - 1
                if form == "@":  # spoken "at": judge the local part, and take back the rest of it
                    if s.lex[k - 1].plain in _EMAIL_STOPWORDS:
                        continue
                    first = _extend_local_part(s, first)
                hits.append((first, last, EMAIL))
    return hits


def _extend_local_part(s: _Stream, first: int) -> int:
    """"john smith eighty five at gmail dot com": the regex finds "five"; take the whole name."""
    k = first
    while k > 0 and first - (k - 1) <= _EMAIL_BACK_WORDS and s.gap(k - 1, k) <= _MAX_JOIN_GAP_S:
        prev = s.lex[k - 1]
        if prev.clause_end or prev.plain in _EMAIL_STOPWORDS or not re.fullmatch(r"[a-z0-9_.-]+", prev.email):
            break
        k -= 1
    while k < first and s.lex[k].email in (".", "_", "-"):  # do not start on a spoken separator
        k += 1
    return k


def _dates_of_birth(s: _Stream, answers: bool) -> list[tuple[int, int, str]]:
    """Dates next to a birth cue ("date of birth is March 3rd 1985", "3/3/85 is my DOB"), or
    the first date that answers one ("Can I have your date of birth?" - "It's the 11th of
    November, 1999."), within ``_DOB_ANSWER_WORDS`` words and ``_DOB_ANSWER_S`` seconds. Answers
    are looked for only in the whole call's reading order (``answers``), where the reply follows
    the question; in one speaker's own words the next date would be a different one."""
    hits = []
    for i, f in enumerate(s.lex):
        if f.plain not in _DOB_CUES:
            continue
        found = [(a, b) for a, b in (_date_beside(s, i, 1), _date_beside(s, i, -1)) if a is not None]
        if not found and answers:
            answer = next(
                (j for j in range(i + 1, min(len(s.lex), i + 1 + _DOB_ANSWER_WORDS))
                 if s.lex[j].date_part and s.gap(i, j) <= _DOB_ANSWER_S),
                None,
            )
            if answer is not None:
                found = [(a, b) for a, b in [_date_beside(s, answer - 1, 1)] if a is not None]
        hits += [(a, b, DOB) for a, b in found]
    return hits


def _date_beside(s: _Stream, cue: int, step: int) -> tuple[int | None, int | None]:
    """The date read after (step 1) or before (step -1) the cue, as first and last positions."""
    j = cue + step
    while _near(s, j - step, j) and abs(j - cue) <= _DOB_SKIP_WORDS and not s.lex[j].date_part \
            and s.lex[j].plain in _DOB_SKIP:
        j += step
    if not _near(s, j - step, j) or not s.lex[j].date_part:
        return None, None
    return _date_from(s, j, step)


def _near(s: _Stream, a: int, b: int) -> bool:
    return 0 <= b < len(s.keys) and s.gap(min(a, b), max(a, b)) <= _MAX_JOIN_GAP_S


def _date_from(s: _Stream, j: int, step: int) -> tuple[int | None, int | None]:
    """The date whose first word (in reading direction) is at j, if it reads as a date."""
    last = k = j
    while _near(s, k, k + step) and abs(k + step - j) < _DOB_MAX_WORDS:
        p = k + step
        f = s.lex[p]
        if f.date_part:
            last = p
        elif not (f.plain in ("of", "the") or f.plain in _HESITATIONS
                  or (f.plain == "and" and p > 0 and s.lex[p - 1].plain in ("thousand", "hundred"))):
            break
        k = p
    a, b = min(j, last), max(j, last)
    # a month, a written date, or a year ("1985", "nineteen eighty five", "two thousand and five")
    if (any(f.month or f.numeric_date or f.plain == "thousand" for f in s.lex[a:b + 1])
            or sum(len(d or "") for d in s.digits[a:b + 1]) >= 4):
        return a, b
    return None, None


_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")


def _old_full_dates(s: _Stream, latest_birth_year: int) -> list[tuple[int, int, str]]:
    """Full calendar dates (day, month and year) in a year only a birth date has: a caller is
    asked for it, and ASR often garbles the question ("what is your date of birth?" heard as
    "what did you do?"), so the cue cannot be relied on. Dates of recent years stay."""
    hits = []
    for j in range(len(s.lex)):
        if not s.lex[j].month or (j > 0 and _near(s, j - 1, j) and s.lex[j - 1].date_part):
            continue  # start at a month ("March 3rd 1960") or the day before it ("3rd of March")
        a, b = _date_from(s, j, 1)
        if a is None:
            continue
        while a > 0 and _near(s, a - 1, a) and (s.lex[a - 1].date_part or s.lex[a - 1].plain in ("of", "the")):
            a -= 1  # the day said before the month
        while a < j and s.lex[a].plain in ("of", "the"):
            a += 1  # "on the [DATE]": the article stays
        years = [int(f.plain) for f in s.lex[a:b + 1] if _YEAR.match(f.plain)]
        if not years:  # a year read out in pieces: "October, 19, one, two, three"
            after_month = "".join(d or "" for d in s.digits[j + 1 : b + 1])
            years = [int(after_month[:4])] if _YEAR.match(after_month[:4]) else []
        if years and all(y <= latest_birth_year for y in years) and b > a:
            hits.append((a, b, DOB))
    return hits


# ---------------------------------------------------------------- public API


def label_words(utterances: list[Utterance], settings: RedactionSettings) -> list[list[str | None]]:
    """The redaction kind of every word (None: kept), from all detectors over all streams."""
    lex = [[_lexical(w.text) for w in u.words] for u in utterances]
    digits = [_digits(x) for x in lex]
    labels: list[list[str | None]] = [[None] * len(u.words) for u in utterances]
    order = sorted(range(len(utterances)), key=lambda k: utterances[k].start)
    speakers: dict[str, list[int]] = {}
    for k in order:
        speakers.setdefault(utterances[k].speaker, []).append(k)
    streams = [order] + (list(speakers.values()) if len(speakers) > 1 else [])
    for n_stream, utt_order in enumerate(streams):
        keys = [(k, w) for k in utt_order for w in range(len(utterances[k].words))]
        s = _Stream(keys, [lex[k][w] for k, w in keys], [digits[k][0][w] for k, w in keys],
                    [digits[k][1][w] for k, w in keys], [utterances[k].words[w] for k, w in keys])
        hits = _digit_runs(s, settings)
        if settings.emails:
            hits += _emails(s)
        if settings.dates_of_birth:
            hits += _dates_of_birth(s, answers=n_stream == 0)
            if n_stream == 0:
                hits += _old_full_dates(s, date.today().year - _MIN_CALLER_AGE)
        if settings.person_names and n_stream == 0:
            ends = [a[0] != b[0] for a, b in zip(keys, keys[1:])] + [True]
            speakers = [utterances[k].speaker for k, _ in keys]
            hits += [(a, b, NAME) for a, b in find_names([w.text for w in s.words], ends, speakers)]
        for first, last, kind in hits:
            span = keys[first:last + 1]
            # The listener's "mm-hmm" between two groups of a number stays theirs.
            own = {k for (k, w), f in zip(span, s.lex[first:last + 1]) if not f.joiner}
            for k, w in span:
                current = labels[k][w]
                if k in own and (current is None or _PRIORITY[kind] > _PRIORITY[current]):
                    labels[k][w] = kind
    return labels
