"""Planted identifiers: the customer reads out a card number, a phone number, an e-mail address
and a date of birth, so that a redaction check knows what must not survive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.devtools.evaluation import number_to_words
from pipeline.devtools.synth.dialogue import A, C, Line, Turn

_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
             "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth "
             "twentieth").split()
_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_EMAIL_WORDS = (("sunny", "blue", "river", "happy", "silver"), ("fox", "hill", "stone", "lake", "bird"))
_EMAIL_DOMAINS = ("quickmail.com", "postbox.net", "mailhub.org")


def _digit_groups(digits: str, sizes: tuple[int, ...]) -> str:
    """'2125550142', (3, 3, 4) -> 'two one two, five five five, zero one four two'."""
    groups, at = [], 0
    for size in sizes:
        groups.append(" ".join(number_to_words(int(d)) for d in digits[at:at + size]))
        at += size
    return ", ".join(groups)


def luhn_check_digit(digits: str) -> str:
    """The digit that makes ``digits + it`` pass the Luhn check card numbers carry."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)  # doubled: every second digit from the check digit
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


def identifier_lines(rng: np.random.Generator) -> tuple[Line, ...]:
    """The agent asks for details; the customer reads each one out in a line of its own."""
    day, month, year = int(rng.integers(1, 21)), int(rng.integers(1, 13)), int(rng.integers(1950, 2000))
    ordinal = _ORDINALS[day - 1]
    dob = f"{year}-{month:02d}-{day:02d}"
    phone = str(rng.integers(2, 10)) + "".join(str(d) for d in rng.integers(0, 10, 9))
    card = "4" + "".join(str(d) for d in rng.integers(0, 10, 14))
    card += luhn_check_digit(card)
    first, second = (str(rng.choice(words)) for words in _EMAIL_WORDS)
    number = int(rng.integers(21, 100))
    domain = str(rng.choice(_EMAIL_DOMAINS))
    email = f"{first}.{second}{number}@{domain}"
    spoken_email = f"{first} dot {second} {number_to_words(number)} at {domain.replace('.', ' dot ')}"
    said = {
        "dob": f"It is the {ordinal} of {_MONTHS[month - 1]}, nineteen {number_to_words(year - 1900)}.",
        "phone": f"My number is {_digit_groups(phone, (3, 3, 4))}.",
        "email": f"It is {spoken_email}.",
        "card": f"Yes, please. The card number is {_digit_groups(card, (4, 4, 4, 4))}.",
    }
    value = {"dob": dob, "phone": phone, "email": email, "card": card}
    asked = (
        ("dob", "Before we go on, I need to check a few details. What is your date of birth?"),
        ("phone", "Thank you. And what is the best phone number to reach you?"),
        ("email", "Which email address should we send the confirmation to?"),
        ("card", "Thank you. If you like, I can also take a card payment for the balance now."),
    )
    out: list[Line] = []
    for kind, question in asked:
        out += [Line(A, question), Line(C, said[kind], identifier=(kind, value[kind]))]
    return (*out, Line(A, "Thank you, that is everything I need."))


@dataclass(frozen=True)
class PlantedIdentifier:
    """An identifier said in a call: what a redaction stage must not let through.

    ``value`` is canonical: digits for ``card`` and ``phone``, the address for ``email``,
    ``YYYY-MM-DD`` for ``dob``. ``text`` is the whole turn as spoken (it is the STM's text).
    """

    kind: str  # card | phone | email | dob
    value: str
    text: str
    speaker: str
    start: float
    end: float


def planted_identifiers(lines: list[Line], turns: list[Turn]) -> list[PlantedIdentifier]:
    return [PlantedIdentifier(line.identifier[0], line.identifier[1], t.text, t.speaker, t.start, t.end)
            for line, t in zip(lines, turns) if line.identifier is not None]
