"""A long call (any number of minutes), written block by block in bounded memory."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.fft import next_fast_len

from pipeline.devtools.synth.call_files import write_metadata, write_pii, write_truth
from pipeline.devtools.synth.calls import SyntheticCall
from pipeline.devtools.synth.dialogue import SCRIPTS, Turn, with_backchannels
from pipeline.devtools.synth.identifiers import PlantedIdentifier, identifier_lines
from pipeline.devtools.synth.signal_chain import (
    SPEECH_ACTIVE_RMS, TELEPHONE_RATE, background_noise, channel_sides, phone_line,
)
from pipeline.devtools.synth.voices import SPEECH_RATE, pick_voices, speak

LONG_FORMATS = ("wav", "flac")  # containers soundfile writes a block at a time


class _BlockWriter:
    """Lays spoken lines on a timeline and writes it out a block at a time, each block through the
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

    def place(self, start: int, speech: np.ndarray, role: str) -> None:
        self.pending.append((start, speech, role))

    def flush(self, end: int) -> None:
        """Write [start, end) (SPEECH_RATE samples; even, so the 2:1 phone rate lines up)."""
        n = end - self.start
        step = SPEECH_RATE // self.rate
        channels = []
        for k, side in enumerate(self.sides):
            track, active = np.zeros(n), np.zeros(n, dtype=bool)
            for start, speech, role in self.pending:
                if role in side:
                    at = start - self.start
                    track[at:at + len(speech)] += self.gains[role] * speech
                    active[at:at + len(speech)] = True
            if self.telephone:
                track = phone_line(track)
            active = active[::step][:len(track)]
            if self.scale[k] is None and active.any():
                self.scale[k] = self.levels[k] / np.sqrt(np.mean(track[active] ** 2))
            track = track * (self.scale[k] or 0.0)
            if self.snr_db is not None:
                # An FFT-friendly length: a block's own length may have large prime factors.
                noise = background_noise(self.noise_rngs[k], next_fast_len(len(track)), self.rate,
                                         self.telephone)[:len(track)]
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
    voices = pick_voices(rng, seed, n_speakers)
    gains = {role: 10 ** (rng.uniform(-4.0, 0.0) / 20) for role in voices}
    identify = identifier_lines(np.random.default_rng([seed, 1])) if pii else ()
    sides = channel_sides(voices, stereo)
    target, block = int(minutes * 60 * SPEECH_RATE), int(block_s * SPEECH_RATE)
    spoken: dict[tuple[str, str, bool], np.ndarray] = {}
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
            for line in with_backchannels(lines, rng):
                key = (line.role, line.text, line.angry)
                if key not in spoken:
                    spoken[key] = speak(line.text, voices[line.role], line.angry, Path(tmp)).astype(np.float32)
                speech = spoken[key]
                if turns:  # the pause before this line; a block may end in it
                    pos += int((rng.uniform(0.2, 0.4) if line.angry else rng.uniform(0.2, 0.8)) * SPEECH_RATE)
                    if pos - writer.start >= block:
                        pos += pos % 2
                        writer.flush(pos)
                writer.place(pos, speech, line.role)
                turn = Turn(line.role, round(pos / SPEECH_RATE, 3), round((pos + len(speech)) / SPEECH_RATE, 3),
                            line.text)
                turns.append(turn)
                if line.angry:
                    angry.append(turn)
                if line.identifier is not None:
                    identifiers.append(PlantedIdentifier(*line.identifier, turn.text, turn.speaker,
                                                         turn.start, turn.end))
                pos += len(speech)
            n_pass += 1
        pos += int(rng.uniform(0.5, 1.0) * SPEECH_RATE)
        pos += pos % 2
        writer.flush(pos)

    rttm_path, stm_path = write_truth(call_id, turns, truth_dir)
    return SyntheticCall(
        call_id=call_id, audio_path=audio_path, rttm_path=rttm_path, stm_path=stm_path,
        metadata_path=write_metadata(out_dir, call_id, None), turns=turns,
        frustrated_span=(angry[0].start, angry[-1].end) if angry else None, n_speakers=n_speakers,
        duration_s=pos / SPEECH_RATE, sample_rate=rate, scenario="long_call", telephone=telephone,
        snr_db=snr_db, stereo=stereo, voices={role: v.label for role, v in voices.items()},
        identifiers=identifiers, pii_path=write_pii(call_id, identifiers, truth_dir) if pii else None,
    )
