"""One synthetic call: spoken, timed and mixed in memory (`render_call`), then written with its
truth (`generate_call`)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.devtools.synth.call_files import FORMATS, write_audio, write_metadata, write_pii, write_truth
from pipeline.devtools.synth.dialogue import A, C, SCRIPTS, SCRIPTS_BY_NAME, Script, Turn, with_backchannels
from pipeline.devtools.synth.identifiers import PlantedIdentifier, identifier_lines, planted_identifiers
from pipeline.devtools.synth.signal_chain import (
    SPEECH_ACTIVE_RMS, TELEPHONE_RATE, channel_sides, level_and_noise, phone_line, side_of, turn_mask,
)
from pipeline.devtools.synth.voices import SPEECH_RATE, pick_voices, speak


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
        return turn_mask(self.turns, len(self.speech), self.sample_rate)


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
    voices = pick_voices(rng, seed, n_speakers)
    # Other generators for the options, so that a seed's plain mono call stays what it was.
    identify = identifier_lines(np.random.default_rng([seed, 1])) if pii else ()
    lines = with_backchannels(script.lines(n_speakers, frustrated, identify), rng)

    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        clips = [speak(line.text, voices[line.role], line.angry, Path(tmp)) for line in lines]
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
    sides = channel_sides(voices, stereo)
    tracks = [np.zeros(length) for _ in sides]
    for line, clip, s in zip(lines, clips, starts):
        tracks[side_of(sides, line.role)][s:s + len(clip)] += gains[line.role] * clip
    # Times from sample indices at the speech rate, rounded to ms as RTTM and STM carry them.
    turns = [
        Turn(line.role, round(s / SPEECH_RATE, 3), round((s + len(clip)) / SPEECH_RATE, 3), line.text)
        for line, clip, s in zip(lines, clips, starts)
    ]
    angry = [t for t, line in zip(turns, lines) if line.angry]
    span = (angry[0].start, angry[-1].end) if angry else None

    rate = SPEECH_RATE
    if telephone:
        tracks, rate = [phone_line(t) for t in tracks], TELEPHONE_RATE
    side_rng = np.random.default_rng([seed, 2])
    speech_tracks, noise_tracks = [], []
    for k, (track, side) in enumerate(zip(tracks, sides)):
        active = turn_mask([t for t in turns if t.speaker in side], len(track), rate)
        # The customer's leg comes in quieter than the agent's headset, by up to 6 dB.
        level = SPEECH_ACTIVE_RMS * (10 ** (side_rng.uniform(-6.0, 0.0) / 20) if k else 1.0)
        if k and customer_gain_db is not None:  # drawn all the same: the noise draws stay put
            level = SPEECH_ACTIVE_RMS * 10 ** (customer_gain_db / 20)
        track, noise = level_and_noise(track, active, level, snr_db, side_rng if k else rng, rate, telephone)
        speech_tracks.append(track)
        noise_tracks.append(noise)
    speech = speech_tracks[0] if not stereo else np.stack(speech_tracks, axis=1)
    noise = noise_tracks[0] if not stereo else np.stack(noise_tracks, axis=1)
    peak = np.max(np.abs(speech + noise))
    if peak > 0.95:  # the same gain on both keeps the SNR
        speech, noise = speech * (0.95 / peak), noise * (0.95 / peak)
    return RenderedCall(speech, noise, rate, turns, span, script.name,
                        {role: v.label for role, v in voices.items()},
                        {"0": A, "1": C} if stereo else None, planted_identifiers(lines, turns))


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
    write_audio(rendered.mix, rendered.sample_rate, audio_path, fmt, mulaw and telephone)
    rttm_path, stm_path = write_truth(call_id, rendered.turns, truth_dir)
    metadata_path = write_metadata(out_dir, call_id, rendered.channel_roles if channel_map_in_metadata else None)
    return SyntheticCall(
        call_id=call_id, audio_path=audio_path, rttm_path=rttm_path, stm_path=stm_path,
        metadata_path=metadata_path, turns=rendered.turns, frustrated_span=rendered.frustrated_span,
        n_speakers=n_speakers, duration_s=rendered.duration_s, sample_rate=rendered.sample_rate,
        scenario=rendered.scenario, telephone=telephone, snr_db=snr_db, stereo=stereo, overlap=overlap,
        voices=rendered.voices, identifiers=rendered.identifiers,
        pii_path=write_pii(call_id, rendered.identifiers, truth_dir) if pii else None,
        condition=condition, customer_gain_db=customer_gain_db if stereo else None,
    )
