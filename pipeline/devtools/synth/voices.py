"""The speakers' voices: espeak-ng with MBROLA voices, one subprocess per utterance."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from pipeline.devtools.synth.dialogue import A, C, C2, S, SCRIPTS

# espeak-ng renders MBROLA voices at 16 kHz: the clean speech is built at this rate.
SPEECH_RATE = 16000


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


def pick_voices(rng: np.random.Generator, seed: int, n_speakers: int) -> dict[str, Voice]:
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


def speak(text: str, voice: Voice, angry: bool, workdir: Path) -> np.ndarray:
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
