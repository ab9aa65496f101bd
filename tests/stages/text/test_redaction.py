"""Unit tests of PII redaction: adversarial identifiers of every kind (written, spoken, split across
ASR words and utterances, punctuation attached), ordinary numbers that must stay, placeholder
types and times, toggles, a property check over generated identifiers, and audio silencing."""

from __future__ import annotations

import dataclasses
import random
import re
import time

import numpy as np
import pytest

from pipeline.settings import RedactionSettings
from pipeline.stages.text.redaction import redact_text, redact_utterances, silence_spans
from pipeline.records import RedactedSpan, Utterance, Word

ON = RedactionSettings()


def _utt(text: str, uid: int = 0, speaker: str = "A", start: float = 0.0, step: float = 0.4) -> Utterance:
    words = tuple(Word(start + k * step, start + k * step + 0.3, " " + w, 0.9 - 0.01 * k) for k, w in enumerate(text.split()))
    return Utterance(uid, speaker, words[0].start, words[-1].end, words)


def _redacted(text: str, settings: RedactionSettings = ON) -> str:
    (u,), _ = redact_utterances([_utt(text)], settings)
    return u.text


# Adversarial cases: (what is said, as the ASR wrote it) -> expected transcript text.
POSITIVE = [
    # card numbers: written, grouped, split, Whisper's commas, spoken, oh/double/triple, mixed
    ("my card number is 4111 1111 1111 1111 thanks", "my card number is [CARD_NUMBER] thanks"),
    ("it is 4111-1111-1111-1111.", "it is [CARD_NUMBER]."),
    ("card 4111111111111111, expiry next year", "card [CARD_NUMBER], expiry next year"),
    ("sure 4111, 1111, 1111, 1111. Anything else", "sure [CARD_NUMBER]. Anything else"),
    ("so 4,111,111,111,111,111 right", "so [CARD_NUMBER] right"),
    ("that's 41 11 111 1111 11 111 please", "that's [CARD_NUMBER] please"),
    ("number 4111.1111.1111.1111 thanks", "number [CARD_NUMBER] thanks"),
    ("four one one one one one one one one one one one one one one one", "[CARD_NUMBER]"),
    ("it's five five oh oh, oh oh oh oh, zero zero zero zero, oh oh oh four.", "it's [CARD_NUMBER]."),
    ("double five double oh double oh double oh double oh double oh double oh oh four", "[CARD_NUMBER]"),
    ("five five triple oh oh, triple oh zero, zero zero oh four", "[CARD_NUMBER]"),
    ("4111 one one one one 1111 one one one one please", "[CARD_NUMBER] please"),
    ("forty-one eleven, eleven eleven, eleven eleven, eleven eleven.", "[CARD_NUMBER]."),
    ("4111 uh 1111 um 1111 1111 ok", "[CARD_NUMBER] ok"),
    ("amex 3782 822463 10005 yes", "amex [CARD_NUMBER] yes"),
    ("the short visa 4222222222222 ok", "the short visa [CARD_NUMBER] ok"),
    ("card 4111 1111 1111 1111 123 is the code", "card [CARD_NUMBER] is the code"),
    ("4111 1111 1111 1111 expiry oh three twenty six CVV one two three",
     "[CARD_NUMBER] expiry [CARD_NUMBER] CVV [CARD_NUMBER]"),
    ("expires 03/26 and the security code is 7 3 9.", "expires [CARD_NUMBER] and the security code is [CARD_NUMBER]."),
    ("4111-1111-1111-1111 (visa)", "[CARD_NUMBER] (visa)"),
    # phone numbers: US and international formats, spoken, double
    ("call me on (555) 123-4567 please", "call me on [PHONE] please"),
    ("it's 555-123-4567.", "it's [PHONE]."),
    ("it's 555.123.4567 thanks", "it's [PHONE] thanks"),
    ("try +1 555 123 4567 after lunch", "try [PHONE] after lunch"),
    ("the office is +44 20 7946 0958, ask for Sam", "the office is [PHONE], ask for [NAME]"),
    ("paris +33 1 42 68 53 00 today", "paris [PHONE] today"),
    ("dial 1-800-555-0199 now", "dial [PHONE] now"),
    ("it's 020 7946 0958 at home", "it's [PHONE] at home"),
    ("my mobile is 07700 900123.", "my mobile is [PHONE]."),
    ("just 555-1234 ok", "just [PHONE] ok"),
    ("my number is five five five one two three four five six seven", "my number is [PHONE]"),
    ("oh two oh seven nine four six, oh nine five eight", "[PHONE]"),
    ("five double five, one two three, four five six seven", "[PHONE]"),
    ("it's plus four four two oh seven nine four six oh nine five eight", "it's [PHONE]"),
    ("phone 555 123 4567", "phone [PHONE]"),
    # e-mail addresses: written, trailing punctuation, spoken, mixed, split by the ASR
    ("write to john.smith@example.com.", "write to [EMAIL]."),
    ("it's John.Smith@Example.co.uk thanks", "it's [EMAIL] thanks"),
    ("it's john dot smith at example dot com thanks", "it's [EMAIL] thanks"),
    ("email is j smith at gmail dot com", "email is [EMAIL]"),
    ("john underscore smith at company dot co dot uk ok", "[EMAIL] ok"),
    ("my address is john.smith at example.com", "my address is [EMAIL]"),
    ("email is john smith eighty five at gmail dot com", "email is [EMAIL]"),
    ("it's jsmith85 at yahoo dot com", "it's [EMAIL]"),
    ("send it to john.smith@ example.com please", "send it to [EMAIL] please"),
    ("mary (at) example (dot) org", "[EMAIL]"),
    # dates of birth: only with a birth cue
    ("my date of birth is March 3rd 1985 and", "my date of birth is [DATE_OF_BIRTH] and"),
    ("DOB 03/03/1985", "DOB [DATE_OF_BIRTH]"),
    ("DOB: 03/03/1985.", "DOB: [DATE_OF_BIRTH]."),
    ("I was born on the third of March nineteen eighty five.", "I was born on the [DATE_OF_BIRTH]."),
    ("my birthday is the 3rd of March", "my birthday is the [DATE_OF_BIRTH]"),
    ("date of birth oh three oh three nineteen eighty five", "date of birth [DATE_OF_BIRTH]"),
    ("birth date 1985-03-03 ok", "birth date [DATE_OF_BIRTH] ok"),
    ("I was born in 1985 and moved", "I was born in [DATE_OF_BIRTH] and moved"),
    ("date of birth is, uh, 3 March 1985.", "date of birth is, uh, [DATE_OF_BIRTH]."),
    ("d.o.b. is twelfth of june two thousand and one", "d.o.b. is [DATE_OF_BIRTH]"),
    ("I was born in two thousand and five", "I was born in [DATE_OF_BIRTH]"),
    ("DOB is uh March uh third", "DOB is uh [DATE_OF_BIRTH]"),
    ("born March twenty-third, 1985 yes", "born [DATE_OF_BIRTH] yes"),
    ("3/3/85 is my date of birth", "[DATE_OF_BIRTH] is my date of birth"),
    ("so March 3rd, 1985 was when I was born", "so [DATE_OF_BIRTH] was when I was born"),
    ("my birthday's on the 3rd of March", "my birthday's on the [DATE_OF_BIRTH]"),
    # long digit runs: accounts, SSN, spoken, Whisper's commas, alphanumeric references
    ("account number 12345678", "account number [NUMBER]"),
    ("SSN 123-45-6789", "SSN [NUMBER]"),
    ("one two three four five six", "[NUMBER]"),
    ("account one two three four five six seven", "account [NUMBER]"),
    ("it's 4,567,890 I think", "it's [NUMBER] I think"),
    ("my reference is AB123456", "my reference is [NUMBER]"),
    ("policy 98 76 54 32 ok", "policy [NUMBER] ok"),
    ("customer 123 456 right", "customer [NUMBER] right"),
]

# Ordinary numbers and look-alikes that must stay as they are.
NEGATIVE = [
    "I have been waiting two weeks",
    "I called three times",
    "it's version 2 of the app",
    "it cost $20 last month",
    "it took 1 hour",
    "the year 2024 was hard",
    "on the 3rd of March we moved",
    "the third of March twenty twenty four was a Sunday",  # a full date in a recent year (older ones read as birth dates)
    "the code is 1234",
    "order 12345 arrived",
    "the appointment is on 03/03/2024 at 10:30",
    "from 2019-2020 I lived there",
    "we had issues in 2022, 2023, 2024 and now",
    "a customer since twenty nineteen, twenty twenty",
    "I'm 45, 46 next month",
    "it's 100,000 points",
    "running version 10.0.19045 now",
    "we paid $1,250,000 for it",
    "about 1,250,000 dollars",
    "Oh, I see",
    "one of them was broken",
    "no one answered",
    "nine to five every day",
    "I work at amazon dot com",
    "I'm at home dot com is down",
    "my birthday was great",
    "I was born in Chicago",
    "50% off",
    "open 24/7",
    "the 1990s were fun",
    "meet at 10am on the 2nd",
    "twenty five minutes then ten more",
    "a hundred and fifty thousand people",
    "room 101 on floor 3",
    "mp3 and 4k video",
    "between 2 and 3 pm",
    "it was 3.5 stars",
    "the code expires in 30 days",
    "the card ending 1111",
]


@pytest.mark.parametrize(("said", "expected"), POSITIVE)
def test_identifiers_become_typed_placeholders(said, expected):
    assert _redacted(said) == expected
    assert redact_text(said, ON)[0] == expected


@pytest.mark.parametrize("said", NEGATIVE)
def test_ordinary_numbers_are_kept(said):
    assert _redacted(said) == said
    assert redact_text(said, ON) == (said, [])


def test_redacted_words_keep_times_and_spans_point_at_them():
    u = _utt("my card is 4111 1111 1111 1111 and my email is jo@example.com", uid=7, start=10.0)
    (r,), spans = redact_utterances([u], ON)
    assert (r.utterance_id, r.speaker, r.start, r.end) == (u.utterance_id, u.speaker, u.start, u.end)
    card = r.words[3]
    assert card.text == " [CARD_NUMBER]"
    assert (card.start, card.end) == (u.words[3].start, u.words[6].end)
    assert card.probability == pytest.approx(min(w.probability for w in u.words[3:7]))
    assert spans == [
        RedactedSpan(7, "card_number", u.words[3].start, u.words[6].end),
        RedactedSpan(7, "email", u.words[11].start, u.words[11].end),
    ]
    assert [w.text for w in r.words[:3]] == [w.text for w in u.words[:3]]
    assert len(r.words) == len(u.words) - 3


def test_asr_words_with_attached_punctuation_and_odd_splits():
    texts = [" My", " card's", " 41", "11,", " 1111-", "1111", " -", " 1111.", " Thanks."]
    words = tuple(Word(float(k), k + 0.5, t, 0.8) for k, t in enumerate(texts))
    (r,), spans = redact_utterances([Utterance(0, "A", 0.0, 8.5, words)], ON)
    assert r.text == "My card's [CARD_NUMBER]. Thanks."
    assert spans == [RedactedSpan(0, "card_number", 2.0, 7.5)]


def test_identifier_read_in_groups_across_utterances_of_both_speakers():
    """The customer reads the card in groups, the agent's "mm-hmm" splits the utterances."""
    utts = [
        _utt("it's 4111", uid=0, speaker="C", start=0.0),
        _utt("mm-hmm", uid=1, speaker="A", start=1.2),
        _utt("1111", uid=2, speaker="C", start=2.5),
        _utt("yep", uid=3, speaker="A", start=3.5),
        _utt("1111 1111 that's it", uid=4, speaker="C", start=4.5),
    ]
    out, spans = redact_utterances(utts, ON)
    assert [u.text for u in out] == ["it's [CARD_NUMBER]", "mm-hmm", "[CARD_NUMBER]", "yep", "[CARD_NUMBER] that's it"]
    assert [(s.utterance_id, s.kind) for s in spans] == [(0, "card_number"), (2, "card_number"), (4, "card_number")]
    assert out[1] is utts[1]  # untouched utterances are passed through


def test_groups_far_apart_in_time_are_not_joined():
    utts = [_utt("room 4111", uid=0, start=0.0), _utt("1111 more", uid=1, start=60.0)]
    out, spans = redact_utterances(utts, ON)
    assert [u.text for u in out] == ["room 4111", "1111 more"] and spans == []


def test_speaker_stream_joins_digits_across_an_interleaved_speaker():
    """A speaker's own stream joins a number read across turns that the call order interleaves."""
    utts = [
        _utt("123", uid=0, speaker="C", start=0.0),
        _utt("sorry what was that", uid=1, speaker="A", start=1.0),
        _utt("456 789", uid=2, speaker="C", start=3.0),
    ]
    out, _ = redact_utterances(utts, ON)
    assert [u.text for u in out] == ["[NUMBER]", "sorry what was that", "[NUMBER]"]


def test_redact_text_keeps_spacing_and_reports_kinds_in_order():
    text = "Call  me on 555-123-4567,\nor mail jo@example.com; card 4111111111111111."
    out, kinds = redact_text(text, ON)
    assert out == "Call  me on [PHONE],\nor mail [EMAIL]; card [CARD_NUMBER]."
    assert kinds == ["phone", "email", "card_number"]
    assert redact_text("", ON) == ("", [])


# ---------------------------------------------------------------- settings

def test_disabled_returns_input_unchanged():
    utts = [_utt("card 4111 1111 1111 1111 mail jo@example.com")]
    off = RedactionSettings(enabled=False)
    out, spans = redact_utterances(utts, off)
    assert out == utts and out[0] is utts[0] and spans == []
    assert redact_text("card 4111111111111111", off) == ("card 4111111111111111", [])


@pytest.mark.parametrize(
    ("toggle", "said", "with_runs", "without_runs"),
    [
        ("card_numbers", "card 4111 1111 1111 1111", "card [NUMBER]", "card 4111 1111 1111 1111"),
        ("phone_numbers", "call (555) 123-4567", "call [NUMBER]", "call (555) 123-4567"),
        ("emails", "mail jo@example.com", "mail jo@example.com", "mail jo@example.com"),
        ("dates_of_birth", "DOB 03/03/1985", "DOB 03/03/1985", "DOB 03/03/1985"),
    ],
)
def test_each_detector_can_be_switched_off(toggle, said, with_runs, without_runs):
    assert _redacted(said) != said  # on by default
    off = dataclasses.replace(ON, **{toggle: False})
    assert _redacted(said, off) == with_runs
    assert _redacted(said, dataclasses.replace(off, long_digit_runs=0)) == without_runs


def test_long_digit_run_threshold():
    assert _redacted("account 12345678", RedactionSettings(long_digit_runs=0)) == "account 12345678"
    assert _redacted("account 12345678", RedactionSettings(long_digit_runs=9)) == "account 12345678"
    assert _redacted("account 123456789", RedactionSettings(long_digit_runs=9)) == "account [NUMBER]"
    assert _redacted("code 12345") == "code 12345"  # under the default of 6
    assert _redacted("code 123456") == "code [NUMBER]"
    # The other detectors do not depend on the threshold.
    assert _redacted("call me on 555-123-4567", RedactionSettings(long_digit_runs=0)) == "call me on [PHONE]"
    assert _redacted("4111 1111 1111 1111", RedactionSettings(long_digit_runs=0)) == "[CARD_NUMBER]"


# ---------------------------------------------------------------- property check

_UNIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEEN_WORDS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS_WORDS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}
_NAMES = ["john", "mary", "priya", "li", "omar", "anna", "jose", "kim"]
_SURNAMES = ["smith", "garcia", "nguyen", "patel", "okafor", "muller", "rossi"]
_DOMAINS = [("example", "com"), ("mail", "co", "uk"), ("company", "org"), ("fastmail", "net"), ("uni", "edu")]
_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December"]
_ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                  "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
                  "eighteenth", "nineteenth", "twentieth"]


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for k, c in enumerate(reversed(body)):
        d = int(c) * (1 if k % 2 else 2)  # positions as they will be once the check digit is appended
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _spoken_digits(rng: random.Random, digits: str) -> list[str]:
    """Digits as people read them: oh/zero, double/triple, pairs as "forty one" or teens."""
    out, k = [], 0
    while k < len(digits):
        d = digits[k]
        same = len(digits[k:]) - len(digits[k:].lstrip(d))
        roll = rng.random()
        if same >= 3 and roll < 0.4:
            out += ["triple", _zero(rng) if d == "0" else _UNIT_WORDS[int(d)]]
            k += 3
        elif same >= 2 and roll < 0.5:
            out += ["double", _zero(rng) if d == "0" else _UNIT_WORDS[int(d)]]
            k += 2
        elif k + 1 < len(digits) and roll < 0.7 and d != "0" and digits[k + 1] != "0":
            out += [_TEEN_WORDS[int(digits[k + 1])]] if d == "1" else [_TENS_WORDS[int(d)], _UNIT_WORDS[int(digits[k + 1])]]
            k += 2
        else:
            out.append(_zero(rng) if d == "0" else _UNIT_WORDS[int(d)])
            k += 1
    return out


def _zero(rng: random.Random) -> str:
    return rng.choice(["oh", "zero", "o"])


def _render_digits(rng: random.Random, digits: str, groups: list[int]) -> list[str]:
    """One identifier as an ASR might write it: grouped, split, with commas, spoken, or mixed."""
    chunks, k = [], 0
    for g in groups:
        chunks.append(digits[k:k + g])
        k += g
    style = rng.choice(["grouped", "joined", "commas", "spoken", "mixed", "split"])
    if style == "grouped":
        sep = rng.choice([" ", "-", ".", ", "])
        words = sep.join(chunks).split(" ")
    elif style == "joined":
        words = [digits]
    elif style == "commas":  # Whisper's thousands separators
        head = len(digits) % 3 or 3
        words = [",".join([digits[:head]] + [digits[i:i + 3] for i in range(head, len(digits), 3)])]
    elif style in ("spoken", "mixed"):
        # a hesitation between groups, not inside one ("twenty, uh, nine" is ambiguous to people too)
        hesitate = rng.randrange(1, len(chunks)) if rng.random() < 0.3 else None
        words = []
        for k, c in enumerate(chunks):
            words += [rng.choice(["uh", "um"])] if k == hesitate else []
            words += _spoken_digits(rng, c) if style == "spoken" or rng.random() < 0.5 else [c]
    else:  # cut anywhere into several ASR words
        cuts = sorted(rng.sample(range(1, len(digits)), rng.randint(1, min(5, len(digits) - 1))))
        words = [digits[a:b] for a, b in zip([0] + cuts, cuts + [len(digits)])]
        if len(words) > 2 and rng.random() < 0.3:
            words.insert(rng.randrange(1, len(words)), rng.choice(["uh", "um"]))
    return [w + ("," if rng.random() < 0.15 and w not in ("double", "triple") else "") for w in words]


def _card(rng):
    length = rng.choice([13, 15, 16, 16, 16, 19])
    digits = _luhn_complete(rng, rng.choice(["4", "51", "55", "37", "6011"]), length)
    groups = {13: [4, 4, 5], 15: [4, 6, 5], 16: [4, 4, 4, 4], 19: [4, 4, 4, 4, 3]}[length]
    prefix = rng.choice(["my card number is", "the card is", "it's", "sure it's"])
    return prefix, _render_digits(rng, digits, groups), {"card_number"}


def _phone(rng):
    fmt = rng.choice(["nanp", "nanp_paren", "intl", "uk", "spoken_local"])
    if fmt == "nanp_paren":
        digits = "".join(rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(9)))
        words = [f"({digits[:3]})", f"{digits[3:6]}-{digits[6:]}"]
    elif fmt == "intl":
        cc = rng.choice(["44", "33", "49", "61", "1"])
        rest = "".join(rng.choice("0123456789") for _ in range(rng.randint(8, 10)))
        words, k = ["+" + cc], 0
        while k < len(rest):
            step = rng.choice([2, 3, 4])
            words.append(rest[k:k + step])
            k += step
        if rng.random() < 0.3:
            words = ["plus"] + _spoken_digits(rng, cc + rest)
    elif fmt == "uk":
        digits = "0" + "".join(rng.choice("0123456789") for _ in range(10))
        words = _render_digits(rng, digits, [5, 6])
    else:
        digits = "".join(rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(rng.choice([6, 9]))))
        words = _render_digits(rng, digits, [3, 4] if len(digits) == 7 else [3, 3, 4])
    prefix = rng.choice(["you can call me on", "my phone number is", "my mobile is", "ring me at"])
    return prefix, words, {"phone"}


def _account(rng):
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 12)))
    groups = [len(digits) // 2, len(digits) - len(digits) // 2]
    prefix = rng.choice(["my account number is", "the reference is", "policy number", "my member id is"])
    return prefix, _render_digits(rng, digits, groups), {"number"}


def _ssn(rng):
    digits = "".join(rng.choice("0123456789") for _ in range(9))
    words = [f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"] if rng.random() < 0.5 else _render_digits(rng, digits, [3, 2, 4])
    return rng.choice(["my social security number is", "SSN"]), words, {"number"}


def _email(rng):
    first, last = rng.choice(_NAMES), rng.choice(_SURNAMES)
    number = str(rng.randint(1, 99)) if rng.random() < 0.3 else ""
    domain = rng.choice(_DOMAINS)
    style = rng.choice(["written", "spoken", "mixed"])
    if style == "written":
        words = [f"{first}{rng.choice(['.', '_', ''])}{last}{number}@{'.'.join(domain)}"]
    elif style == "spoken":
        local = [first, rng.choice(["dot", "underscore"]), last] + (_spoken_digits(rng, number) if number else [])
        words = local + ["at"] + " dot ".join(domain).split()
    else:
        words = [f"{first}.{last}{number}", "at", ".".join(domain)]
    return rng.choice(["my email is", "you can email", "the address is", "it's"]), words, {"email"}


def _date_of_birth(rng):
    year, month, day = rng.randint(1930, 2010), rng.randint(1, 12), rng.randint(1, 20)
    style = rng.choice(["numeric", "month_first", "day_first", "spoken", "iso"])
    if style == "numeric":
        words = [f"{day:02d}/{month:02d}/{year}"]
    elif style == "iso":
        words = [f"{year}-{month:02d}-{day:02d}"]
    elif style == "month_first":
        words = [_MONTH_NAMES[month - 1], f"{day}{'th' if day > 3 else ['st', 'nd', 'rd'][day - 1]},", str(year)]
    elif style == "day_first":
        words = [str(day), _MONTH_NAMES[month - 1], str(year)]
    else:
        words = [_ORDINAL_WORDS[day - 1], "of", _MONTH_NAMES[month - 1]] + _spoken_digits(rng, str(year))
    prefix = rng.choice(["my date of birth is", "DOB", "I was born on", "my birthday is", "date of birth"])
    return prefix, words, {"date_of_birth"}


_PLANTED = [_card, _phone, _account, _ssn, _email, _date_of_birth]
_BEFORE = ["thanks for waiting two weeks", "okay so", "right I called three times and", "hello", "sure"]
_AFTER = ["thanks", "and that was 1 hour ago", "is that all you need", "please check it", "version 2 works"]

_SPOKEN_VALUE = {w: str(k) for k, w in enumerate(_UNIT_WORDS)} | {"oh": "0", "o": "0"} | {
    w: str(10 + k) for k, w in enumerate(_TEEN_WORDS)} | {w: str(k) for k, w in _TENS_WORDS.items()}


def _longest_digit_run(text: str) -> int:
    """Independent check: consecutive words that carry digits (written or spoken), concatenated."""
    best = run = 0
    for word in text.lower().split():
        core = word.strip(",.;:!?")
        value = _SPOKEN_VALUE.get(core) or re.sub(r"\D", "", core)
        run = run + len(value) if value or core in ("double", "triple", "uh", "um") else 0
        best = max(best, run)
    return best


@pytest.mark.parametrize("cued", [True, False], ids=["with-cue", "no-cue"])
def test_every_planted_identifier_is_removed(cued):
    """400 identifiers of every kind and rendering, planted in sentences with ordinary numbers
    around them: each becomes exactly one placeholder, nothing else changes. With its cue ("my
    phone number is") the placeholder names the kind; without one (dates of birth need theirs)
    a number is still removed, though "a phone" and "an account" can no longer be told apart."""
    rng = random.Random(20240303 + cued)
    planted = _PLANTED if cued else [g for g in _PLANTED if g is not _date_of_birth]
    for _ in range(400):
        generate = rng.choice(planted)
        prefix, words, kinds = generate(rng)
        if not cued:
            prefix = "so it's"
            kinds = kinds if generate in (_card, _email) else {"phone", "number"}
        before, after = rng.choice(_BEFORE), rng.choice(_AFTER)
        end = "." if rng.random() < 0.3 else ""
        said = f"{before} {prefix} {' '.join(words)}{end} {after}"
        out = _redacted(said)
        m = re.fullmatch(rf"{re.escape(before + ' ' + prefix)} \[([A-Z_]+)\],?{re.escape(end)} {re.escape(after)}", out)
        assert m, f"{said!r} -> {out!r}"
        assert m.group(1).lower() in kinds, f"{said!r} -> {out!r}"
        assert _longest_digit_run(out) < ON.long_digit_runs, out


# ---------------------------------------------------------------- performance

def _letters(k: int) -> str:
    out = ""
    while True:
        k, r = divmod(k, 26)
        out += "abcdefghijklmnopqrstuvwxyz"[r]
        if not k:
            return out + "q"


def test_an_hour_of_transcript_is_redacted_in_well_under_a_second():
    """~9,000 words (an hour of two-party speech), the ordinary words all distinct so the
    per-word cache does not help, with identifiers planted throughout."""
    rng = random.Random(1)
    planted = ["my card number is 4111 1111 1111 1111", "reach me at john dot smith at example dot com",
               "my date of birth is March 3rd 1985", "the reference is one two three four five six seven"]
    utts, t, n_words = [], 0.0, 0
    while n_words < 9000:
        line = rng.choice(planted) if rng.random() < 0.2 else " ".join(_letters(n_words + j) for j in range(12))
        u = _utt(line, uid=len(utts), speaker="AC"[len(utts) % 2], start=t)
        utts.append(u)
        t, n_words = u.end + 0.5, n_words + len(u.words)
    started = time.perf_counter()
    out, spans = redact_utterances(utts, ON)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, elapsed
    redacted = sum(1 for before, after in zip(utts, out) if before.text != after.text)
    assert redacted == len(spans) == sum(1 for u in utts if u.text in planted) > 100
    assert all(not re.search(r"\d{6}", u.text) and "smith" not in u.text and "1985" not in u.text for u in out)


# ---------------------------------------------------------------- audio

def test_silence_spans_zeroes_exactly_the_spans_with_fades_outside():
    sr = 16000
    samples = np.random.default_rng(0).uniform(0.2, 1.0, sr * 3).astype(np.float32)
    spans = [RedactedSpan(0, "card_number", 0.5, 1.0), RedactedSpan(1, "phone", 2.0, 2.25),
             RedactedSpan(1, "phone", 2.2, 2.5)]  # overlapping spans merge
    out = silence_spans(samples, sr, spans)
    fade = int(0.01 * sr)
    assert out.dtype == samples.dtype and out.shape == samples.shape
    assert np.all(out[8000:16000] == 0) and np.all(out[32000:40000] == 0)
    # the fades, just outside each span, fall towards it; everything else is untouched
    ramp_in = out[8000 - fade:8000] / samples[8000 - fade:8000]
    assert np.all(np.diff(ramp_in) < 0) and 0 < ramp_in.min() and ramp_in.max() < 1
    ramp_out = out[16000:16000 + fade] / samples[16000:16000 + fade]
    assert np.all(np.diff(ramp_out) > 0) and 0 < ramp_out.min() and ramp_out.max() < 1
    keep = np.ones(len(samples), bool)
    keep[8000 - fade:16000 + fade] = False
    keep[32000 - fade:40000 + fade] = False
    assert np.array_equal(out[keep], samples[keep])
    assert not np.any(samples[8000:16000] == 0)  # the input is not modified


def test_silence_spans_on_two_channels_and_integer_samples_and_edges():
    sr = 8000
    stereo = np.full((2, sr), 1000, dtype=np.int16)
    out = silence_spans(stereo, sr, [RedactedSpan(0, "email", 0.0, 0.25), RedactedSpan(0, "email", 0.9, 2.0)])
    assert out.dtype == np.int16 and out.shape == (2, sr)
    assert np.all(out[:, :2000] == 0) and np.all(out[:, 7200:] == 0)
    assert np.all(out[:, 2080:7120] == 1000)
    assert np.all(stereo == 1000)
    assert np.array_equal(silence_spans(stereo, sr, []), stereo)


def _spoken(i, speaker, start, text):
    """An utterance whose words are 0.3 s apart."""

    return Utterance(i, speaker, start, start + 3, tuple(Word(start + k * 0.3, start + k * 0.3 + 0.25, " " + w, 0.9)
                                                      for k, w in enumerate(text.split())))


def test_a_date_answering_a_birth_question_from_the_other_speaker_is_redacted():
    utt = _spoken
    calls = [utt(0, "A", 0.0, "Can I have your date of birth, please?"),
             utt(1, "C", 4.0, "There is 11th of November, 1999."),
             utt(2, "A", 8.0, "Thank you. The outage started on the 3rd of March.")]
    out, spans = redact_utterances(calls, RedactionSettings())
    assert "1999" not in out[1].text and "November" not in out[1].text and "[DATE_OF_BIRTH]" in out[1].text
    assert out[2].text == calls[2].text  # a later date with no birth question stays
    assert [s.kind for s in spans] == ["date_of_birth"]


def test_a_garbled_reply_to_an_email_question_is_redacted_but_other_replies_are_not():
    utt = _spoken
    calls = [utt(0, "A", 0.0, "And what is your email address?"),
             utt(1, "C", 4.0, "It's happy God's Fox 96, that's quick, mail God's comes."),
             utt(2, "A", 8.0, "Thanks. Anything else?"),
             utt(3, "C", 10.0, "No that is all.")]
    out, spans = redact_utterances(calls, RedactionSettings())
    assert out[1].text == "It's [EMAIL]."  # trailing punctuation kept
    assert out[2].text == calls[2].text and out[3].text == calls[3].text
    assert {s.kind for s in spans} == {"email"}
    # An e-mail mentioned, not asked for: the reply is no address.
    told = [utt(0, "A", 0.0, "Your new bill will arrive by email today."), utt(1, "C", 4.0, "Good. And I do not pay the old one?")]
    assert redact_utterances(told, RedactionSettings())[0] == told


@pytest.mark.parametrize("text, kept", [
    ("There is 11th of November, 1999.", False),  # the question "date of birth?" was lost to ASR
    ("It is the 9th of December, 1950. Thank you.", False),
    ("March 3rd 1960", False),
    ("But in the 18th of October, 19, one, two, three.", False),  # a year ASR read out in pieces
    ("I ordered it on the 3rd of March 2024 and it never came.", True),  # a recent date: not a birth date
    ("The outage started on March 3rd.", True),  # no year
    ("Since 1999 I have been a customer.", True),  # a year alone
])
def test_full_dates_in_birth_years_are_redacted_without_a_cue(text, kept):
    out, kinds = redact_text(text, RedactionSettings())
    assert (out == text) is kept, out
    if not kept:
        assert kinds == ["date_of_birth"] and not re.search(r"19\d\d", out)


# ---------------------------------------------------------------- people's names

@pytest.mark.parametrize("said, expected", [
    ("Thank you for calling Blue Sky Bank, my name is Sam. How can I help?",
     "Thank you for calling Blue Sky Bank, my name is [NAME]. How can I help?"),
    ("Hello Daniel, this is Morgan from the security team.", "Hello [NAME], this is [NAME] from the security team."),
    ("Hi, this is her husband, Tom.", "Hi, this is her husband, [NAME]."),
    ("I spoke to Mrs O'Brien yesterday.", "I spoke to Mrs [NAME] yesterday."),
    ("my name is Mary Anne Smith and I have a question", "my name is [NAME] and I have a question"),
    ("Yes, it is under Daniel Cooper.", "Yes, it is under [NAME]."),
    ("Thank you, Grace.", "Thank you, [NAME]."),
    ("I'm Priya, calling about my bill.", "I'm [NAME], calling about my bill."),
    ("Thank you for your patience, Daniel.", "Thank you for your patience, [NAME]."),
])
def test_names_introduced_or_addressed_become_placeholders(said, expected):
    out, kinds = redact_text(said, ON)
    assert out == expected and set(kinds) == {"name"}


@pytest.mark.parametrize("said", [
    "Thank you for calling Blue Sky Bank, how can I help?",
    "This is ridiculous, I am furious!",
    "It's Friday, and this is Summit Outdoor customer care.",
    "I'm Sorry about that, Okay?",
    "Good. And I do not need to pay the old one?",
    "The parcel left our warehouse in Denver on Thursday.",
    "Yes. Absolutely, thanks. Great work on that.",
    "My name is on the account. This is important.",
    "That's what it is. Nobody told me.",
    "It arrives on Friday, Okay? Then the refund, Tuesday.",
])
def test_capitalised_words_that_no_phrase_marks_as_a_name_are_kept(said):
    assert redact_text(said, ON) == (said, [])


def test_a_name_found_once_is_redacted_wherever_the_call_repeats_it_and_answers_to_name_questions_too():
    calls = [_spoken(0, "A", 0.0, "Thank you for calling, my name is Alex. May I have your full name, please?"),
             _spoken(1, "C", 5.0, "Maria Lopez."),
             _spoken(2, "C", 7.0, "Alex, the bill is wrong and Lopez is my married name."),
             _spoken(3, "A", 12.0, "I see, Maria. Denver is where the account was opened?")]
    out, spans = redact_utterances(calls, ON)
    assert [u.text for u in out] == [
        "Thank you for calling, my name is [NAME]. May I have your full name, please?",
        "[NAME].",
        "[NAME], the bill is wrong and [NAME] is my married name.",
        "I see, [NAME]. Denver is where the account was opened?",
    ]
    assert {s.kind for s in spans} == {"name"} and len(spans) == 5
    # Each placeholder keeps its words' times, so snippets can silence the name.
    assert (spans[0].start, spans[0].end) == (calls[0].words[7].start, calls[0].words[7].end)
    off = RedactionSettings(person_names=False)
    assert redact_utterances(calls, off)[0] == calls
