"""Between the voices and the recorder: the phone line, channel levels and background noise."""

from __future__ import annotations

import numpy as np
from scipy import signal

from pipeline.devtools.synth.dialogue import A, Turn
from pipeline.devtools.synth.voices import SPEECH_RATE

TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)
# Speech is levelled to this RMS (over its active samples) before noise is added: about -23 dBFS.
SPEECH_ACTIVE_RMS = 0.07


def turn_mask(turns: list[Turn], n: int, rate: int) -> np.ndarray:
    """True on the samples (of ``n`` at ``rate``) inside one of ``turns``."""
    mask = np.zeros(n, dtype=bool)
    pad = rate // 1000  # turn times are rounded to the millisecond
    for t in turns:
        mask[max(0, int(t.start * rate) - pad):int(np.ceil(t.end * rate)) + pad] = True
    return mask


def phone_line(audio: np.ndarray) -> np.ndarray:
    """A phone line: down to 8 kHz, then 300-3400 Hz (zero phase, so the truth stays exact)."""
    narrow = signal.resample_poly(audio, 1, SPEECH_RATE // TELEPHONE_RATE)
    sos = signal.butter(4, TELEPHONE_BAND_HZ, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    return signal.sosfiltfilt(sos, narrow)


def background_noise(rng: np.random.Generator, n: int, rate: int, telephone: bool) -> np.ndarray:
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


def channel_sides(roles, stereo: bool) -> list[frozenset[str]]:
    """Who is heard on each channel: everyone on one, or the agent alone on channel 0."""
    if not stereo:
        return [frozenset(roles)]
    return [frozenset({A}), frozenset(r for r in roles if r != A)]


def side_of(sides: list[frozenset[str]], role: str) -> int:
    return next(i for i, side in enumerate(sides) if role in side)


def level_and_noise(
    track: np.ndarray, active: np.ndarray, level: float, snr_db: float | None,
    rng: np.random.Generator, rate: int, telephone: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Speech scaled to ``level`` RMS over its active samples, and noise at ``snr_db`` below it."""
    track = track * (level / np.sqrt(np.mean(track[active] ** 2)))
    noise = np.zeros_like(track)
    if snr_db is not None:
        noise = background_noise(rng, len(track), rate, telephone)
        noise *= np.sqrt(np.mean(track[active] ** 2) / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return track, noise
