"""Synthetic support calls with a known truth: demo recordings and test data.

A scripted agent and customer (optionally a supervisor and a second customer voice) are spoken by
espeak-ng with MBROLA voices, one subprocess per utterance, laid on a timeline with natural gaps,
sent through a telephone channel (8 kHz, 300-3400 Hz, μ-law) and mixed with noise at a requested
SNR. Next to the audio go the truth files: RTTM (who spoke when), STM (what was said) and a
metadata JSON (roles, consent) in the shape the pipeline reads.

Variants for evaluation: stereo (the agent alone on channel 0, everyone else on channel 1, as
contact-centre recorders store the two legs of a call), planted identifiers (the customer reads
out a card number, a phone number, an e-mail address and a date of birth; what was planted is
written to ``<call_id>.pii.json`` so a redaction check knows what must not survive), a long call
(any number of minutes, written block by block in bounded memory) and a test set over speaker
count, SNR, channels and overlap, optionally with stereo calls whose customer is 0-10 dB
quieter than the agent (`generate_test_set`).

The customer's frustrated stretch is angry in words *and* in voice (faster, higher, louder), so
both text valence and voice arousal cues have something real to find.

Everything is deterministic for a seed: the truth always, and the bytes too (espeak-ng, numpy's
seeded generator and ffmpeg's bitexact flags are all deterministic).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy import signal
from scipy.fft import next_fast_len

# espeak-ng renders MBROLA voices at 16 kHz: the clean speech is built at this rate.
SPEECH_RATE = 16000
TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
FORMATS = ("wav", "flac", "mp3", "m4a")
# Speech is levelled to this RMS (over its active samples) before noise is added: about -23 dBFS.
SPEECH_ACTIVE_RMS = 0.07
BACKCHANNELS = ("Okay.", "Right.", "I see.", "Sure.")


class Turn(NamedTuple):
    speaker: str
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Line:
    role: str  # agent | customer | supervisor | customer2
    text: str
    angry: bool = False
    # (kind, value) of an identifier this line reads out, e.g. ("card", "4539148803436467").
    identifier: tuple[str, str] | None = None


@dataclass(frozen=True)
class Script:
    """One dialogue, in blocks so that speakers and the frustrated stretch can be switched."""

    name: str
    opening: tuple[Line, ...]
    complaint: tuple[Line, ...]
    # The customer's angry stretch; agent lines in it are short interjections only.
    frustrated: tuple[Line, ...]
    # Said instead of `frustrated` when the call is not frustrated.
    calm: tuple[Line, ...]
    # Used when n_speakers >= 3 (a supervisor joins) and == 4 (a second customer voice).
    supervisor: tuple[Line, ...]
    second_customer: tuple[Line, ...]
    resolution: tuple[Line, ...]
    closing: tuple[Line, ...]

    def lines(self, n_speakers: int, frustrated: bool, identify: tuple[Line, ...] = ()) -> list[Line]:
        """The call's lines; ``identify`` (details read out) goes right after the opening."""
        out = [*self.opening, *identify, *self.complaint]
        if n_speakers >= 4:
            out += self.second_customer
        out += self.frustrated if frustrated else self.calm
        if n_speakers >= 3:
            out += self.supervisor
        return out + [*self.resolution, *self.closing]


def _lines(*pairs: tuple[str, str] | tuple[str, str, bool]) -> tuple[Line, ...]:
    return tuple(Line(*p) for p in pairs)


A, C, S, C2 = "agent", "customer", "supervisor", "customer2"

# Plain words on purpose: no digits, titles or brand spellings that a recogniser may write
# differently, so WER on these calls measures the recogniser, not the normaliser.
SCRIPTS: tuple[Script, ...] = (
    Script(
        name="internet_outage",
        opening=_lines(
            (A, "Thank you for calling Bright Line Internet, my name is Alex. How can I help you today?"),
            (C, "Hi, my internet has been down since yesterday morning, and I work from home."),
            (A, "I am sorry to hear that. Can I have the name on the account, please?"),
            (C, "Yes, it is under Daniel Cooper."),
        ),
        complaint=_lines(
            (A, "Thank you, Daniel. I can see that your modem is offline. Have you tried restarting it?"),
            (C, "Yes, I restarted it three times, and the lights keep flashing orange."),
            (A, "Okay. There is a known outage in your area, and our technicians are working on it."),
        ),
        frustrated=_lines(
            (C, "An outage? Nobody told me anything. This is ridiculous!", True),
            (A, "I understand."),
            (C, "I am furious. I lost a whole day of work, and this is the third time this month!", True),
            (A, "I am very sorry."),
            (C, "Sorry is not good enough. This is the worst service I have ever had, and I pay for it every month!", True),
        ),
        calm=_lines(
            (C, "I see. That explains it. I lost most of a day of work, so I hope it is fixed soon."),
            (A, "I completely understand."),
            (C, "Is there anything you can do about the lost time?"),
        ),
        supervisor=_lines(
            (A, "Let me bring in my supervisor, Morgan, who can help with a credit."),
            (S, "Hello Daniel, this is Morgan, the shift supervisor. I have read the notes on your account."),
            (C, "Thank you for joining."),
            (S, "I am adding a credit for the whole week to your next bill, and I have marked your line as a priority."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is Emma, I am on the speaker as well. We both work from home, so this affects the two of us."),
            (A, "Thank you, Emma, that is good to know. I have added it to the notes."),
        ),
        resolution=_lines(
            (A, "The repair crew expects to restore your service by this evening."),
            (C, "Okay. Will I get a message when it is back?"),
            (A, "Yes, you will get a text message as soon as the line is up again."),
            (C, "All right, thank you."),
        ),
        closing=_lines(
            (A, "Is there anything else I can help you with today?"),
            (C, "No, that is all."),
            (A, "Thank you for your patience, Daniel. Have a good evening."),
            (C, "You too, goodbye."),
        ),
    ),
    Script(
        name="billing_dispute",
        opening=_lines(
            (A, "Thank you for calling City Power customer care, my name is Jordan. How may I help you?"),
            (C, "Hello, I am calling about my latest bill. It is almost twice what I normally pay."),
            (A, "I can look into that for you. May I have your full name, please?"),
            (C, "Maria Lopez."),
        ),
        complaint=_lines(
            (A, "Thank you, Maria. I have your account open. Your bill shows an estimated reading for last month."),
            (C, "Estimated? Somebody came and read the meter two weeks ago."),
            (A, "I see. It looks like that reading was not entered in our system."),
        ),
        frustrated=_lines(
            (C, "So I am paying double because of your mistake? This is ridiculous!", True),
            (A, "I understand your concern."),
            (C, "No, you do not. I am furious. This is the second time you have overcharged me!", True),
            (A, "I apologize."),
            (C, "This is the worst service I have ever seen. I am sick of calling you every month!", True),
        ),
        calm=_lines(
            (C, "I see. So the bill is wrong because the reading was never entered."),
            (A, "Yes, that is right."),
            (C, "Can you correct it before the payment is due?"),
        ),
        supervisor=_lines(
            (A, "I am going to bring in my supervisor, Riley, who can approve a correction."),
            (S, "Hi Maria, this is Riley, I supervise the billing team. I have looked at your meter history."),
            (C, "Thank you for picking this up."),
            (S, "I have approved a corrected bill based on the actual reading, and removed the late fee."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is her husband, Tom. I am on the line too. We keep the bills together."),
            (A, "Hello Tom, thank you. I can speak with both of you."),
        ),
        resolution=_lines(
            (A, "Your new bill will be about half of the amount you saw, and it will arrive by email today."),
            (C, "Good. And I do not need to pay the old one?"),
            (A, "That is correct. The old bill has been cancelled."),
            (C, "Okay, thank you for fixing it."),
        ),
        closing=_lines(
            (A, "Is there anything else I can do for you today?"),
            (C, "No, that is everything."),
            (A, "Thank you for calling City Power, Maria. Have a nice day."),
            (C, "Thanks, you too."),
        ),
    ),
    Script(
        name="password_reset",
        opening=_lines(
            (A, "Thank you for calling Blue Sky Bank, my name is Sam. What can I do for you today?"),
            (C, "Hi, I am locked out of my online banking, and I need to pay a bill today."),
            (A, "I can help with that. Can you confirm your name and the city where you opened the account?"),
            (C, "Sure, it is Peter Walsh, and I opened it in Denver."),
        ),
        complaint=_lines(
            (A, "Thank you, Peter. I see the account was locked after several failed sign in attempts."),
            (C, "I tried to reset my password, but the code never arrives on my phone."),
            (A, "Let me check. It looks like the phone number on file is an old one."),
        ),
        frustrated=_lines(
            (C, "I updated that number months ago. This is ridiculous!", True),
            (A, "I hear you."),
            (C, "I am furious. I have been trying for two days, and now my bill will be late!", True),
            (A, "I am sorry about that."),
            (C, "This is the worst bank I have ever dealt with. Nothing ever works!", True),
        ),
        calm=_lines(
            (C, "Oh, I see. I thought I had updated that number a while ago."),
            (A, "It happens quite often."),
            (C, "Can we change it now, so the code comes to my new phone?"),
        ),
        supervisor=_lines(
            (A, "I will ask my supervisor, Casey, to confirm the change, because it is a security update."),
            (S, "Hello Peter, this is Casey from the security team. I have verified your identity."),
            (C, "Okay, thank you."),
            (S, "Your new phone number is saved, and I have waived any late fee on today's bill."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is Anna, his partner. The account is in both our names, and I am locked out too."),
            (A, "Thank you, Anna. The reset will work for both of you."),
        ),
        resolution=_lines(
            (A, "I have sent a new code to your phone. Can you read it back to me when it arrives?"),
            (C, "Yes, it just arrived. It is working now."),
            (A, "Great. Please choose a new password, and you can sign in right away."),
            (C, "Done. I can see my account again."),
        ),
        closing=_lines(
            (A, "Is there anything else I can help you with?"),
            (C, "No, that was it."),
            (A, "Thank you for banking with Blue Sky, Peter. Have a good day."),
            (C, "Thanks, bye."),
        ),
    ),
    Script(
        name="delivery_delay",
        opening=_lines(
            (A, "Thank you for calling Summit Outdoor, my name is Taylor. How can I help you?"),
            (C, "Hi, I ordered a tent three weeks ago, and it still has not arrived."),
            (A, "I am sorry for the wait. Could I have the name on the order, please?"),
            (C, "It is under Grace Miller."),
        ),
        complaint=_lines(
            (A, "Thank you, Grace. I can see that your order left our warehouse, but the tracking stopped last week."),
            (C, "The website keeps saying it is on the way, but nothing changes."),
            (A, "It looks like the parcel was delayed at the carrier's depot."),
        ),
        frustrated=_lines(
            (C, "Delayed? We leave for our camping trip on Friday. This is ridiculous!", True),
            (A, "I understand."),
            (C, "I am furious. I paid extra for fast shipping, and nobody told me anything!", True),
            (A, "I am really sorry."),
            (C, "This is the worst service I have ever had. I want my money back!", True),
        ),
        calm=_lines(
            (C, "I see. We leave for our camping trip on Friday, so I am a bit worried."),
            (A, "That is completely fair."),
            (C, "Is there any way to get it before then?"),
        ),
        supervisor=_lines(
            (A, "Let me bring in my supervisor, Jamie, who can arrange a new shipment."),
            (S, "Hi Grace, this is Jamie, I manage our shipping team. I have read what happened."),
            (C, "Thank you for helping."),
            (S, "I am sending a new tent today by express delivery, and refunding your shipping cost."),
        ),
        second_customer=_lines(
            (C2, "Hi, this is Ben, her brother. The trip is my idea, so I am listening in."),
            (A, "Hello Ben, thanks for joining. We will get this sorted out."),
        ),
        resolution=_lines(
            (A, "The new parcel will arrive on Thursday, before your trip."),
            (C, "And what about the first one?"),
            (A, "If it arrives, you can refuse it, and it will come back to us at no cost."),
            (C, "Okay, that works. Thank you."),
        ),
        closing=_lines(
            (A, "Is there anything else I can help you with today?"),
            (C, "No, that is all, thanks."),
            (A, "Enjoy your camping trip, Grace. Goodbye."),
            (C, "Thank you, goodbye."),
        ),
    ),
)
SCRIPTS_BY_NAME = {s.name: s for s in SCRIPTS}


@dataclass(frozen=True)
class Voice:
    name: str  # an espeak-ng voice
    pitch: int = 50  # espeak -p, 0..99
    speed: int = 170  # espeak -s, words per minute
    # Formant and pitch scale: the rendered audio played at this speed (tempo kept with `speed`),
    # as if from a longer (< 1) or shorter (> 1) vocal tract: another speaker from the same voice.
    warp: float = 1.0

    @property
    def label(self) -> str:
        """E.g. ``mb-en1 -p48 -s183 warp 0.9``: what the truth records as the speaker's voice."""
        return f"{self.name} -p{self.pitch} -s{self.speed}" + (f" warp {self.warp:g}" if self.warp != 1.0 else "")


# Agent and customer are always one female and one male MBROLA voice. A third and a fourth speaker
# must sound like other people to the diarizer's speaker encoder, not just to a listener. Measured
# with it (Resemblyzer, telephone band, cosine between voice centroids; real different speakers sit
# near 0.91): mb-us2 and mb-us3 0.94, too close to be two people, and mb-en1 against either
# 0.87-0.88. A warped voice moves further: mb-en1 at warp 0.9 is 0.81-0.82 from mb-us2/mb-us3,
# mb-us2 at warp 1.12 0.77 from mb-en1 and 0.84 from mb-us1; the espeak formant voices en-us+f4
# and en-us+m3 are at most 0.83 from any of them. Pitch alone barely moves the encoder (mb-us2 at
# -p 45 and -p 70: 0.997), so it only adds variety.
_FEMALE = Voice("mb-us1", pitch=55, speed=165)
_MALES = (Voice("mb-us2", pitch=45, speed=170), Voice("mb-us3", pitch=50, speed=175),
          Voice("mb-en1", pitch=48, speed=165))
# The supervisor, by the call's main male voice: a male the encoder tells apart from it.
_SUPERVISOR = {"mb-us2": Voice("mb-en1", pitch=48, speed=183, warp=0.9),
               "mb-us3": Voice("mb-en1", pitch=48, speed=183, warp=0.9),
               "mb-en1": Voice("mb-us2", pitch=50, speed=152, warp=1.12)}
_FOURTH = (Voice("en-us+f4", pitch=60, speed=165), Voice("en-us+m3", pitch=40, speed=160))
# Anger as espeak can express it: faster, higher and louder than the speaker's calm voice.
ANGRY_SPEED_GAIN = 1.25
ANGRY_PITCH = 80
ANGRY_AMPLITUDE = 150  # espeak -a, default 100


def _pick_voices(rng: np.random.Generator, seed: int, n_speakers: int) -> dict[str, Voice]:
    """A different voice per role; the draws for two speakers are those of earlier releases."""
    males = [_MALES[i] for i in rng.permutation(len(_MALES))]
    # Alternates over consecutive seeds and over the repeats of each script.
    female_agent = (seed + seed // len(SCRIPTS)) % 2 == 1
    main = males.pop(0)
    voices = {A: _FEMALE if female_agent else main, C: main if female_agent else _FEMALE}
    if n_speakers >= 3:
        voices[S] = _SUPERVISOR[main.name]
    if n_speakers >= 4:
        fourth = _FOURTH[seed % len(_FOURTH)]
        # A pitch offset per seed: the same formant voice is not always the same person.
        voices[C2] = Voice(fourth.name, pitch=fourth.pitch + 6 * (seed % 3 - 1), speed=fourth.speed)
    return voices


# ----- planted identifiers -------------------------------------------------------------------

_DIGITS = "zero one two three four five six seven eight nine".split()
_TEENS = ("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen "
          "nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
             "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth "
             "twentieth").split()
_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_EMAIL_WORDS = (("sunny", "blue", "river", "happy", "silver"), ("fox", "hill", "stone", "lake", "bird"))
_EMAIL_DOMAINS = ("quickmail.com", "postbox.net", "mailhub.org")


def _below_hundred(n: int) -> str:
    if n < 10:
        return _DIGITS[n]
    if n < 20:
        return _TEENS[n - 10]
    return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _DIGITS[n % 10])


def _digit_groups(digits: str, sizes: tuple[int, ...]) -> str:
    """'2125550142', (3, 3, 4) -> 'two one two, five five five, zero one four two'."""
    groups, at = [], 0
    for size in sizes:
        groups.append(" ".join(_DIGITS[int(d)] for d in digits[at:at + size]))
        at += size
    return ", ".join(groups)


def luhn_check_digit(digits: str) -> str:
    """The digit that makes ``digits + it`` pass the Luhn check card numbers carry."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)  # doubled: every second digit from the check digit
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


def _pii_lines(rng: np.random.Generator) -> tuple[Line, ...]:
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
    spoken_email = f"{first} dot {second} {_below_hundred(number)} at {domain.replace('.', ' dot ')}"
    said = {
        "dob": f"It is the {ordinal} of {_MONTHS[month - 1]}, nineteen {_below_hundred(year - 1900)}.",
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


@dataclass
class SyntheticCall:
    """A written call and its truth. Turns are in time order; times in seconds, ms precision."""

    call_id: str
    audio_path: Path
    rttm_path: Path
    stm_path: Path
    metadata_path: Path
    turns: list[Turn]
    frustrated_span: tuple[float, float] | None
    n_speakers: int
    duration_s: float
    sample_rate: int
    scenario: str
    telephone: bool = True
    snr_db: float | None = None
    stereo: bool = False
    overlap: bool = False
    voices: dict[str, str] = field(default_factory=dict)  # role -> `Voice.label`
    identifiers: list[PlantedIdentifier] = field(default_factory=list)
    pii_path: Path | None = None  # <call_id>.pii.json next to the RTTM when identifiers were planted
    condition: str = ""  # the test-set condition, e.g. "3spk-tel-10db-stereo"
    customer_gain_db: float | None = None  # stereo: the customer's level set relative to the agent's

    def describe(self) -> dict:
        """JSON-ready fields for a test-set manifest (paths as strings, no turns)."""
        return {
            "call_id": self.call_id, "condition": self.condition, "audio": str(self.audio_path),
            "rttm": str(self.rttm_path), "stm": str(self.stm_path), "metadata": str(self.metadata_path),
            "pii": str(self.pii_path) if self.pii_path else None, "n_speakers": self.n_speakers,
            "telephone": self.telephone, "snr_db": self.snr_db, "stereo": self.stereo,
            "overlap": self.overlap, "frustrated": self.frustrated_span is not None,
            "duration_s": round(self.duration_s, 3), "sample_rate": self.sample_rate,
            "scenario": self.scenario, "voices": self.voices,
            "planted": [i.kind for i in self.identifiers], "customer_gain_db": self.customer_gain_db,
        }


@dataclass
class RenderedCall:
    """A call before it is written: clean speech and noise kept apart, both at the output rate.

    ``speech + noise`` is what is written (then μ-law coded for a telephone WAV, or encoded).
    """

    speech: np.ndarray  # (samples,) mono, or (samples, 2) stereo
    noise: np.ndarray
    sample_rate: int
    turns: list[Turn]
    frustrated_span: tuple[float, float] | None
    scenario: str
    voices: dict[str, str]
    channel_roles: dict[str, str] | None = None  # stereo: {"0": "agent", "1": "customer"}
    identifiers: list[PlantedIdentifier] = field(default_factory=list)

    @property
    def mix(self) -> np.ndarray:
        return self.speech + self.noise

    @property
    def duration_s(self) -> float:
        return len(self.speech) / self.sample_rate

    def active_mask(self) -> np.ndarray:
        """True on samples inside a reference turn."""
        return _active_mask(self.turns, len(self.speech), self.sample_rate)


def _active_mask(turns: list[Turn], n: int, rate: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    pad = rate // 1000  # turn times are rounded to the millisecond
    for t in turns:
        mask[max(0, int(t.start * rate) - pad):int(np.ceil(t.end * rate)) + pad] = True
    return mask


def _espeak(text: str, voice: Voice, angry: bool, workdir: Path) -> np.ndarray:
    """One utterance at SPEECH_RATE, with espeak's leading and trailing silence trimmed."""
    speed = round(voice.speed * ANGRY_SPEED_GAIN) if angry else voice.speed
    pitch = ANGRY_PITCH if angry else voice.pitch
    amplitude = ANGRY_AMPLITUDE if angry else 100
    wav = workdir / "utt.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice.name, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
         "-w", str(wav), text],
        check=True, capture_output=True,
    )
    audio, rate = sf.read(wav, dtype="float64")
    rate = round(rate * voice.warp)  # read at another rate: pitch and formants scale by warp
    if rate != SPEECH_RATE:  # plain espeak voices render at 22050 Hz
        g = np.gcd(SPEECH_RATE, rate)
        audio = signal.resample_poly(audio, SPEECH_RATE // g, rate // g)
    loud = np.flatnonzero(np.abs(audio) > 1e-3)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r} with {voice.name}")
    return audio[loud[0]:loud[-1] + 1]


def _split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def _utterances(lines: list[Line], rng: np.random.Generator) -> list[Line]:
    """Split some calm multi-sentence lines so the listener can slip in a backchannel."""
    out: list[Line] = []
    for i, line in enumerate(lines):
        sentences = _split_sentences(line.text)
        listener = lines[i - 1].role if i > 0 else None
        if (not line.angry and line.identifier is None and len(sentences) >= 2
                and listener not in (None, line.role) and rng.random() < 0.3):
            cut = int(rng.integers(1, len(sentences)))
            out.append(Line(line.role, " ".join(sentences[:cut])))
            out.append(Line(listener, str(rng.choice(BACKCHANNELS))))
            out.append(Line(line.role, " ".join(sentences[cut:])))
        else:
            out.append(line)
    return out


def _telephone(audio: np.ndarray) -> np.ndarray:
    """A phone line: down to 8 kHz, then 300-3400 Hz (zero phase, so the truth stays exact)."""
    narrow = signal.resample_poly(audio, 1, SPEECH_RATE // TELEPHONE_RATE)
    sos = signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    return signal.sosfiltfilt(sos, narrow)


def _noise(rng: np.random.Generator, n: int, rate: int, telephone: bool) -> np.ndarray:
    """Between pink and brown (power ~ 1/f^1.5) plus a little mains hum with harmonics."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / rate), 20.0)
    shaped = np.fft.irfft(spectrum / freqs ** 0.75, n)
    shaped /= np.sqrt(np.mean(shaped ** 2))
    t = np.arange(n) / rate
    hum = sum(np.sin(2 * np.pi * 60.0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 10))
    hum *= np.sqrt(0.1 / np.mean(hum ** 2))  # hum 10 dB below the broadband noise
    noise = shaped + hum
    if telephone:  # background noise goes through the same phone line as the speech
        sos = signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=rate, output="sos")
        noise = signal.sosfiltfilt(sos, noise)
    return noise


def _sides(roles, stereo: bool) -> list[frozenset[str]]:
    """Who is heard on each channel: everyone on one, or the agent alone on channel 0."""
    if not stereo:
        return [frozenset(roles)]
    return [frozenset({A}), frozenset(r for r in roles if r != A)]


def _side_of(sides: list[frozenset[str]], role: str) -> int:
    return next(i for i, side in enumerate(sides) if role in side)


def _level_and_noise(
    track: np.ndarray, active: np.ndarray, level: float, snr_db: float | None,
    rng: np.random.Generator, rate: int, telephone: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Speech scaled to ``level`` RMS over its active samples, and noise at ``snr_db`` below it."""
    track = track * (level / np.sqrt(np.mean(track[active] ** 2)))
    noise = np.zeros_like(track)
    if snr_db is not None:
        noise = _noise(rng, len(track), rate, telephone)
        noise *= np.sqrt(np.mean(track[active] ** 2) / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return track, noise


def _identifiers(lines: list[Line], turns: list[Turn]) -> list[PlantedIdentifier]:
    return [PlantedIdentifier(line.identifier[0], line.identifier[1], t.text, t.speaker, t.start, t.end)
            for line, t in zip(lines, turns) if line.identifier is not None]


def render_call(
    *,
    seed: int = 0,
    n_speakers: int = 2,
    telephone: bool = True,
    snr_db: float | None = 20.0,
    frustrated: bool = True,
    overlap: bool = False,
    script: str | Script | None = None,
    stereo: bool = False,
    pii: bool = False,
    customer_gain_db: float | None = None,
) -> RenderedCall:
    """Speak, time and mix one call in memory; `generate_call` writes it with its truth.

    Stereo: the agent alone on channel 0, everyone else on channel 1, each channel through its
    own phone line, at its own level and with its own noise (the SNR holds per channel). The
    customer's channel is 0-6 dB quieter than the agent's (drawn per seed), or exactly
    ``customer_gain_db`` (e.g. -10.0) when given; it has no effect on a mono call.
    """
    if customer_gain_db is not None and not -40.0 <= customer_gain_db <= 20.0:
        raise ValueError(f"customer_gain_db must be within -40..20 dB, got {customer_gain_db}")
    if not 2 <= n_speakers <= 4:
        raise ValueError(f"n_speakers must be 2..4, got {n_speakers}")
    if script is None:
        script = SCRIPTS[seed % len(SCRIPTS)]
    elif isinstance(script, str):
        script = SCRIPTS_BY_NAME[script]
    rng = np.random.default_rng(seed)
    voices = _pick_voices(rng, seed, n_speakers)
    # Other generators for the options, so that a seed's plain mono call stays what it was.
    identify = _pii_lines(np.random.default_rng([seed, 1])) if pii else ()
    lines = _utterances(script.lines(n_speakers, frustrated, identify), rng)

    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        clips = [_espeak(line.text, voices[line.role], line.angry, Path(tmp)) for line in lines]
    # Channel levels differ a little per speaker, as on a real line.
    gains = {role: 10 ** (rng.uniform(-4.0, 0.0) / 20) for role in voices}

    # Gaps between turns; overlap mode makes a few speaker changes start early instead.
    # An angry customer cuts in quickly: shorter gaps before angry lines.
    gaps = [float(rng.uniform(0.2, 0.4) if line.angry else rng.uniform(0.2, 0.8)) for line in lines]
    if overlap:
        changes = [i for i in range(1, len(lines)) if lines[i].role != lines[i - 1].role]
        overlapped: set[int] = set()
        for i in sorted(int(i) for i in rng.choice(changes, size=min(3, len(changes)), replace=False)):
            if i - 1 in overlapped:  # never three voices at once
                continue
            shortest = min(len(clips[i]), len(clips[i - 1])) / SPEECH_RATE
            gaps[i] = -min(float(rng.uniform(0.3, 0.6)), shortest / 2)
            overlapped.add(i)

    starts = [int(rng.uniform(0.4, 1.0) * SPEECH_RATE)]
    for i in range(1, len(clips)):
        starts.append(starts[-1] + len(clips[i - 1]) + int(gaps[i] * SPEECH_RATE))
    length = starts[-1] + len(clips[-1]) + int(rng.uniform(0.5, 1.0) * SPEECH_RATE)
    sides = _sides(voices, stereo)
    tracks = [np.zeros(length) for _ in sides]
    for line, clip, s in zip(lines, clips, starts):
        tracks[_side_of(sides, line.role)][s:s + len(clip)] += gains[line.role] * clip
    # Times from sample indices at the speech rate, rounded to ms as RTTM and STM carry them.
    turns = [
        Turn(line.role, round(s / SPEECH_RATE, 3), round((s + len(clip)) / SPEECH_RATE, 3), line.text)
        for line, clip, s in zip(lines, clips, starts)
    ]
    angry = [t for t, line in zip(turns, lines) if line.angry]
    span = (angry[0].start, angry[-1].end) if angry else None

    rate = SPEECH_RATE
    if telephone:
        tracks, rate = [_telephone(t) for t in tracks], TELEPHONE_RATE
    side_rng = np.random.default_rng([seed, 2])
    speech_tracks, noise_tracks = [], []
    for k, (track, side) in enumerate(zip(tracks, sides)):
        active = _active_mask([t for t in turns if t.speaker in side], len(track), rate)
        # The customer's leg comes in quieter than the agent's headset, by up to 6 dB.
        level = SPEECH_ACTIVE_RMS * (10 ** (side_rng.uniform(-6.0, 0.0) / 20) if k else 1.0)
        if k and customer_gain_db is not None:  # drawn all the same: the noise draws stay put
            level = SPEECH_ACTIVE_RMS * 10 ** (customer_gain_db / 20)
        track, noise = _level_and_noise(track, active, level, snr_db, side_rng if k else rng, rate, telephone)
        speech_tracks.append(track)
        noise_tracks.append(noise)
    speech = speech_tracks[0] if not stereo else np.stack(speech_tracks, axis=1)
    noise = noise_tracks[0] if not stereo else np.stack(noise_tracks, axis=1)
    peak = np.max(np.abs(speech + noise))
    if peak > 0.95:  # the same gain on both keeps the SNR
        speech, noise = speech * (0.95 / peak), noise * (0.95 / peak)
    return RenderedCall(speech, noise, rate, turns, span, script.name,
                        {role: v.label for role, v in voices.items()},
                        {"0": A, "1": C} if stereo else None, _identifiers(lines, turns))


def _write_audio(mix: np.ndarray, rate: int, path: Path, fmt: str, mulaw: bool) -> None:
    """WAV directly (μ-law coded when asked); other containers via ffmpeg from that WAV."""
    subtype = "ULAW" if mulaw else "PCM_16"
    if fmt == "wav":
        sf.write(path, mix, rate, subtype=subtype, format="WAV")
        return
    codec = {"flac": ["-c:a", "flac"],
             "mp3": ["-c:a", "libmp3lame", "-b:a", "32k" if rate <= 8000 else "64k"],
             "m4a": ["-c:a", "aac", "-b:a", "24k" if rate <= 8000 else "48k"]}[fmt]
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        wav = Path(tmp) / "mix.wav"
        sf.write(wav, mix, rate, subtype=subtype, format="WAV")
        subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav),
             "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", *codec,
             str(path)],
            check=True, capture_output=True,
        )


def _rttm(call_id: str, turns: list[Turn]) -> str:
    return "".join(
        f"SPEAKER {call_id} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
        for t in turns
    )


def _stm(call_id: str, turns: list[Turn]) -> str:
    return "".join(f"{call_id} 1 {t.speaker} {t.start:.3f} {t.end:.3f} {t.text}\n" for t in turns)


def _write_pii(call_id: str, identifiers: list[PlantedIdentifier], truth_dir: Path) -> Path:
    path = truth_dir / f"{call_id}.pii.json"
    path.write_text(json.dumps({"call_id": call_id, "identifiers": [asdict(i) for i in identifiers]},
                               indent=2) + "\n")
    return path


def _write_truth(call_id: str, turns: list[Turn], truth_dir: Path) -> tuple[Path, Path]:
    rttm_path = truth_dir / f"{call_id}.rttm"
    rttm_path.write_text(_rttm(call_id, turns))
    stm_path = truth_dir / f"{call_id}.stm"
    stm_path.write_text(_stm(call_id, turns))
    return rttm_path, stm_path


def _write_metadata(out_dir: Path, call_id: str, channel_roles: dict[str, str] | None) -> Path:
    metadata = {
        "call_id": call_id,
        # Roles are not given: the pipeline must infer them (the truth is in the RTTM labels).
        "consent": {"voice_affect": True, "text_affect": True, "video": False},
    }
    if channel_roles is not None:  # what a recorder that knows its legs would say
        metadata["channels"] = channel_roles
    path = out_dir / f"{call_id}.json"
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def generate_call(
    out_dir: Path,
    call_id: str,
    *,
    seed: int = 0,
    n_speakers: int = 2,
    telephone: bool = True,
    snr_db: float | None = 20.0,
    frustrated: bool = True,
    fmt: str = "wav",
    script: str | Script | None = None,
    overlap: bool = False,
    mulaw: bool = True,
    truth_dir: Path | None = None,
    stereo: bool = False,
    channel_map_in_metadata: bool = False,
    pii: bool = False,
    condition: str = "",
    customer_gain_db: float | None = None,
) -> SyntheticCall:
    """Write ``<call_id>.<fmt>`` and ``<call_id>.json`` to out_dir, ``.rttm``/``.stm`` to truth_dir.

    truth_dir defaults to out_dir; the demo keeps the truth apart from what it uploads.
    μ-law applies to telephone calls only. ``stereo`` writes two channels (agent on 0, everyone
    else on 1); the metadata names them (``"channels": {"0": "agent", "1": "customer"}``) only
    with ``channel_map_in_metadata``, so by default the pipeline has to work it out. ``pii``
    has the customer read out identifiers, listed in ``<call_id>.pii.json`` in truth_dir.
    ``customer_gain_db`` (stereo) sets the customer's channel level relative to the agent's
    (0 to -10 dB is what contact-centre recordings show); by default it is drawn, 0 to -6 dB.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    out_dir = Path(out_dir)
    truth_dir = Path(truth_dir) if truth_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    rendered = render_call(seed=seed, n_speakers=n_speakers, telephone=telephone, snr_db=snr_db,
                           frustrated=frustrated, overlap=overlap, script=script, stereo=stereo, pii=pii,
                           customer_gain_db=customer_gain_db)
    audio_path = out_dir / f"{call_id}.{fmt}"
    _write_audio(rendered.mix, rendered.sample_rate, audio_path, fmt, mulaw and telephone)
    rttm_path, stm_path = _write_truth(call_id, rendered.turns, truth_dir)
    metadata_path = _write_metadata(out_dir, call_id, rendered.channel_roles if channel_map_in_metadata else None)
    return SyntheticCall(
        call_id=call_id, audio_path=audio_path, rttm_path=rttm_path, stm_path=stm_path,
        metadata_path=metadata_path, turns=rendered.turns, frustrated_span=rendered.frustrated_span,
        n_speakers=n_speakers, duration_s=rendered.duration_s, sample_rate=rendered.sample_rate,
        scenario=rendered.scenario, telephone=telephone, snr_db=snr_db, stereo=stereo, overlap=overlap,
        voices=rendered.voices, identifiers=rendered.identifiers,
        pii_path=_write_pii(call_id, rendered.identifiers, truth_dir) if pii else None,
        condition=condition, customer_gain_db=customer_gain_db if stereo else None,
    )


LONG_FORMATS = ("wav", "flac")  # containers soundfile writes a block at a time


class _BlockWriter:
    """Lays clips on a timeline and writes it out a block at a time, each block through the
    phone line and mixed with noise: memory holds one block, however long the call.

    Levels are fixed by the first block (one gain per channel for the whole call, as a recorder's
    would be); blocks end in a pause between turns, so filtering them apart leaves no seams.
    """

    def __init__(self, sink: sf.SoundFile, sides: list[frozenset[str]], gains: dict[str, float],
                 telephone: bool, snr_db: float | None, seed: int):
        self.sink, self.sides, self.gains = sink, sides, gains
        self.telephone, self.snr_db = telephone, snr_db
        self.rate = TELEPHONE_RATE if telephone else SPEECH_RATE
        side_rng = np.random.default_rng([seed, 2])
        self.levels = [SPEECH_ACTIVE_RMS * (10 ** (side_rng.uniform(-6.0, 0.0) / 20) if k else 1.0)
                       for k in range(len(sides))]
        self.noise_rngs = [np.random.default_rng([seed, 3, k]) for k in range(len(sides))]
        self.scale: list[float | None] = [None] * len(sides)
        self.start = 0  # sample (at SPEECH_RATE) where the pending block begins
        self.pending: list[tuple[int, np.ndarray, str]] = []

    def place(self, start: int, clip: np.ndarray, role: str) -> None:
        self.pending.append((start, clip, role))

    def flush(self, end: int) -> None:
        """Write [start, end) (SPEECH_RATE samples; even, so the 2:1 phone rate lines up)."""
        n = end - self.start
        step = SPEECH_RATE // self.rate
        channels = []
        for k, side in enumerate(self.sides):
            track, active = np.zeros(n), np.zeros(n, dtype=bool)
            for start, clip, role in self.pending:
                if role in side:
                    at = start - self.start
                    track[at:at + len(clip)] += self.gains[role] * clip
                    active[at:at + len(clip)] = True
            if self.telephone:
                track = _telephone(track)
            active = active[::step][:len(track)]
            if self.scale[k] is None and active.any():
                self.scale[k] = self.levels[k] / np.sqrt(np.mean(track[active] ** 2))
            track = track * (self.scale[k] or 0.0)
            if self.snr_db is not None:
                # An FFT-friendly length: a block's own length may have large prime factors.
                noise = _noise(self.noise_rngs[k], next_fast_len(len(track)), self.rate, self.telephone)[:len(track)]
                track += noise * (self.levels[k] / 10 ** (self.snr_db / 20) / np.sqrt(np.mean(noise ** 2)))
            channels.append(np.clip(track, -1.0, 1.0))
        self.sink.write(channels[0] if len(channels) == 1 else np.stack(channels, axis=1))
        self.start, self.pending = end, []


def generate_long_call(
    out_dir: Path,
    call_id: str,
    *,
    minutes: float = 30.0,
    seed: int = 0,
    n_speakers: int = 2,
    telephone: bool = True,
    snr_db: float | None = 20.0,
    stereo: bool = False,
    pii: bool = False,
    fmt: str = "wav",
    mulaw: bool = True,
    truth_dir: Path | None = None,
    block_s: float = 60.0,
) -> SyntheticCall:
    """A call of at least ``minutes``, written like `generate_call` (audio, metadata, truth).

    The same agent and customer (and supervisor, second customer) work through one issue after
    another: the opening once, then the middle of each script in turn, then a closing. One pass
    past the half-way mark is the frustrated one. Each distinct line is spoken once and reused,
    and the audio is written block by block, so a 60-minute call takes seconds and little memory.
    """
    if fmt not in LONG_FORMATS:
        raise ValueError(f"fmt must be one of {LONG_FORMATS} for a long call, got {fmt!r}")
    if not 2 <= n_speakers <= 4:
        raise ValueError(f"n_speakers must be 2..4, got {n_speakers}")
    out_dir = Path(out_dir)
    truth_dir = Path(truth_dir) if truth_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    voices = _pick_voices(rng, seed, n_speakers)
    gains = {role: 10 ** (rng.uniform(-4.0, 0.0) / 20) for role in voices}
    identify = _pii_lines(np.random.default_rng([seed, 1])) if pii else ()
    sides = _sides(voices, stereo)
    target, block = int(minutes * 60 * SPEECH_RATE), int(block_s * SPEECH_RATE)
    clips: dict[tuple[str, str, bool], np.ndarray] = {}
    turns: list[Turn] = []
    identifiers: list[PlantedIdentifier] = []
    angry: list[Turn] = []
    audio_path = out_dir / f"{call_id}.{fmt}"
    rate = TELEPHONE_RATE if telephone else SPEECH_RATE
    subtype = "ULAW" if (mulaw and telephone and fmt == "wav") else "PCM_16"

    with (tempfile.TemporaryDirectory(prefix="synth-") as tmp,
          sf.SoundFile(audio_path, "w", samplerate=rate, channels=len(sides), subtype=subtype,
                       format=fmt.upper()) as sink):
        writer = _BlockWriter(sink, sides, gains, telephone, snr_db, seed)
        pos = int(rng.uniform(0.4, 1.0) * SPEECH_RATE)
        frustrated_done, n_pass, closed = False, 0, False
        while not closed:
            script = SCRIPTS[(seed + n_pass) % len(SCRIPTS)]
            closed = pos >= target
            if closed:
                lines = list(script.closing)
            else:
                frustrated = not frustrated_done and pos >= target // 2
                frustrated_done |= frustrated
                body = script.lines(n_speakers, frustrated, identify if n_pass == 0 else ())
                lines = body[len(script.opening) if n_pass else 0:len(body) - len(script.closing)]
            for line in _utterances(lines, rng):
                key = (line.role, line.text, line.angry)
                if key not in clips:
                    clips[key] = _espeak(line.text, voices[line.role], line.angry, Path(tmp)).astype(np.float32)
                clip = clips[key]
                if turns:  # the pause before this line; a block may end in it
                    pos += int((rng.uniform(0.2, 0.4) if line.angry else rng.uniform(0.2, 0.8)) * SPEECH_RATE)
                    if pos - writer.start >= block:
                        pos += pos % 2
                        writer.flush(pos)
                writer.place(pos, clip, line.role)
                turn = Turn(line.role, round(pos / SPEECH_RATE, 3), round((pos + len(clip)) / SPEECH_RATE, 3),
                            line.text)
                turns.append(turn)
                if line.angry:
                    angry.append(turn)
                if line.identifier is not None:
                    identifiers.append(PlantedIdentifier(*line.identifier, turn.text, turn.speaker,
                                                         turn.start, turn.end))
                pos += len(clip)
            n_pass += 1
        pos += int(rng.uniform(0.5, 1.0) * SPEECH_RATE)
        pos += pos % 2
        writer.flush(pos)

    rttm_path, stm_path = _write_truth(call_id, turns, truth_dir)
    return SyntheticCall(
        call_id=call_id, audio_path=audio_path, rttm_path=rttm_path, stm_path=stm_path,
        metadata_path=_write_metadata(out_dir, call_id, None), turns=turns,
        frustrated_span=(angry[0].start, angry[-1].end) if angry else None, n_speakers=n_speakers,
        duration_s=pos / SPEECH_RATE, sample_rate=rate, scenario="long_call", telephone=telephone,
        snr_db=snr_db, stereo=stereo, voices={role: v.label for role, v in voices.items()},
        identifiers=identifiers, pii_path=_write_pii(call_id, identifiers, truth_dir) if pii else None,
    )


# The demo set cycles through these: speaker counts, channels, SNRs, containers, with and
# without a frustrated stretch, one with overlaps.
_DEMO_VARIANTS = (
    dict(n_speakers=2, telephone=True, snr_db=20.0, fmt="wav", frustrated=True),
    dict(n_speakers=3, telephone=True, snr_db=15.0, fmt="flac", frustrated=True),
    dict(n_speakers=2, telephone=False, snr_db=25.0, fmt="mp3", frustrated=False),
    dict(n_speakers=4, telephone=True, snr_db=20.0, fmt="m4a", frustrated=True),
    dict(n_speakers=2, telephone=True, snr_db=12.0, fmt="wav", frustrated=True, overlap=True),
)


def generate_demo_set(out_dir: Path, n_calls: int = 3, seed: int = 0,
                      truth_dir: Path | None = None) -> list[SyntheticCall]:
    """A varied set of calls named ``synth-<seed>-<i>``; consecutive calls use different scripts."""
    return [
        generate_call(out_dir, f"synth-{seed:03d}-{i:03d}", seed=seed * len(SCRIPTS) + i,
                      truth_dir=truth_dir, **_DEMO_VARIANTS[i % len(_DEMO_VARIANTS)])
        for i in range(n_calls)
    ]


TEST_SET_SPEAKERS = (2, 3, 4)
TEST_SET_SNRS_DB = (20.0, 10.0)
# Stereo calls with the customer's channel this much quieter than the agent's (set, not drawn).
TEST_SET_CUSTOMER_GAINS_DB = (0.0, -5.0, -10.0)


def test_set_condition(n_speakers: int, snr_db: float, stereo: bool, customer_gain_db: float | None = None) -> str:
    """The condition's name, the head of its calls' ids: ``3spk-tel-10db-stereo``, or with the
    customer's level set, ``2spk-tel-20db-stereo-cust-10db``."""
    name = f"{n_speakers}spk-tel-{snr_db:.0f}db-{'stereo' if stereo else 'mono'}"
    return name if customer_gain_db is None else f"{name}-cust{customer_gain_db:.0f}db"


def generate_test_set(out_dir: Path, seed: int = 0, per_condition: int = 1, *,
                      truth_dir: Path | None = None,
                      customer_gains_db: tuple[float, ...] = ()) -> list[SyntheticCall]:
    """Telephone calls with known truth: 2/3/4 speakers x SNR 20/10 dB x mono/stereo.

    Call ids are ``<condition>[-ov]-<i>``, e.g. ``3spk-tel-10db-stereo-ov-01``: ``-ov`` marks a
    call with overlapped speaker changes. Half the calls also have identifiers read out
    (``SyntheticCall.pii_path``). Overlap and identifiers are spread so that even one call per
    condition has both, with and without, in mono and stereo and at both SNRs. Stereo calls'
    metadata does not name the channels: the pipeline has to infer which one is the agent.

    ``customer_gains_db`` (e.g. `TEST_SET_CUSTOMER_GAINS_DB`) adds two-speaker stereo
    conditions, SNR 20/10 dB x each customer level, e.g. ``2spk-tel-10db-stereo-cust-5db``:
    plain calls (no overlap, no identifiers), for the customer's words on a quieter channel.
    """
    calls = []
    grid = [(n, snr, stereo) for n in TEST_SET_SPEAKERS for snr in TEST_SET_SNRS_DB for stereo in (False, True)]
    for c, (n_speakers, snr_db, stereo) in enumerate(grid):
        condition = test_set_condition(n_speakers, snr_db, stereo)
        for i in range(per_condition):
            overlap = (i + c // 2 + c // 4) % 2 == 1
            calls.append(generate_call(
                out_dir, f"{condition}{'-ov' if overlap else ''}-{i:02d}",
                seed=seed * 1000 + c * per_condition + i, n_speakers=n_speakers, telephone=True,
                snr_db=snr_db, stereo=stereo, overlap=overlap, pii=(i + c + c // 2) % 2 == 0,
                frustrated=(c + i) % 3 != 2, truth_dir=truth_dir, condition=condition,
            ))
    levels = [(snr, gain) for gain in customer_gains_db for snr in TEST_SET_SNRS_DB]
    for c, (snr_db, gain) in enumerate(levels):
        condition = test_set_condition(2, snr_db, True, gain)
        for i in range(per_condition):
            calls.append(generate_call(
                out_dir, f"{condition}-{i:02d}", seed=seed * 1000 + 500 + c * per_condition + i, n_speakers=2,
                telephone=True, snr_db=snr_db, stereo=True, frustrated=(c + i) % 3 != 2, truth_dir=truth_dir,
                condition=condition, customer_gain_db=gain,
            ))
    return calls


def write_bad_inputs(out_dir: Path) -> dict[str, Path]:
    """Inputs the pipeline must quarantine, keyed by file name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("empty.wav", "truncated.wav", "not_media.mp3", "silent.wav")}
    paths["empty.wav"].write_bytes(b"")
    # A real 5 s WAV cut after 300 bytes: the header still claims 160,000 bytes of data.
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(5 * SPEECH_RATE) / SPEECH_RATE)
    buf = io.BytesIO()
    sf.write(buf, tone, SPEECH_RATE, subtype="PCM_16", format="WAV")
    paths["truncated.wav"].write_bytes(buf.getvalue()[:300])
    paths["not_media.mp3"].write_bytes(b"This is not an audio file, just text with an mp3 name.\n" * 20)
    sf.write(paths["silent.wav"], np.zeros(10 * SPEECH_RATE, dtype=np.int16), SPEECH_RATE, subtype="PCM_16")
    return paths

