"""Voice affect: audio + speaker turns -> arousal cues per window.

Two steps: ``extract_frames`` reads loudness and pitch every 10 ms with the configured backend
(``voice.backend``: ``bs1770-pyin``, the licence-clean default, in ``bs1770_pyin``; or the
opt-in ``opensmile-egemaps`` in ``opensmile_egemaps``, imported only when chosen), and
``score_windows`` turns them into arousal per speaker window.

Arousal is read from loudness, pitch level and pitch range relative to the same speaker's own
baseline in the call (z-scores against the speaker's median and spread), so voice, gender,
microphone, line level and the backend's loudness unit cancel out. 0 means "this speaker's
usual level in this call". No valence is read from the voice here: prosodic cues for valence
are weak without a trained head, and a number we cannot stand behind is worse than a missing one.
"""

from __future__ import annotations

import importlib

import numpy as np
from pyannote.core import Annotation

from pipeline.records import SpeakerWindow, VoiceArousal, VoiceFrames
from pipeline.settings import Settings, VoiceSettings
from pipeline.stages import contract

_FRAME_S = 0.01
# voice.backend -> the module that reads it (each has NAME, model_version() and features()).
_MODULES = {"bs1770-pyin": "bs1770_pyin", "opensmile-egemaps": "opensmile_egemaps"}


def _backend(voice: VoiceSettings):
    # VoiceSettings refuses unknown names; the import is lazy so that openSMILE is loaded only
    # when it is the chosen backend.
    return importlib.import_module(f"pipeline.stages.voice.{_MODULES[voice.backend]}")


def model_version(settings: Settings) -> str:
    return _backend(settings.voice).model_version()


def extract_frames(samples: np.ndarray, sample_rate: int, voice: VoiceSettings,
                   chunk_s: float = 300.0, context_s: float = 1.0) -> VoiceFrames:
    """Loudness and pitch every 10 ms, extracted in chunks (with a second of context on both
    sides, dropped again) so an hour-long call never passes through the extractor in one piece."""
    features = _backend(voice).features
    hop = int(round(_FRAME_S * sample_rate))
    chunk, context = int(chunk_s * sample_rate) // hop * hop, int(context_s * sample_rate) // hop * hop
    loudness, pitch = [], []
    for start in range(0, len(samples), chunk):
        begin = max(0, start - context)
        loud, f0 = features(samples[begin : start + chunk + context], sample_rate)
        keep = slice((start - begin) // hop, (start - begin) // hop + chunk // hop)
        loudness.append(loud[keep])
        pitch.append(f0[keep])
    return VoiceFrames(loudness=np.concatenate(loudness), f0_semitones=np.concatenate(pitch), hop_s=_FRAME_S)


def _speaker_mask(frames: VoiceFrames, turns: Annotation, speaker: str) -> np.ndarray:
    mask = np.zeros(len(frames.loudness), dtype=bool)
    for segment in turns.label_timeline(speaker):
        mask[int(segment.start / frames.hop_s) : int(segment.end / frames.hop_s)] = True
    return mask


def _robust_z(value: float, reference: np.ndarray) -> float:
    median = float(np.median(reference))
    spread = float(np.subtract(*np.percentile(reference, [75, 25]))) / 1.349  # IQR -> sigma
    return (value - median) / max(spread, 1e-3)


def score_windows(
    frames: VoiceFrames, turns: Annotation, windows: list[SpeakerWindow]
) -> list[VoiceArousal]:
    """Arousal per speaker window, from that speaker's frames only."""
    masks = {s: _speaker_mask(frames, turns, s) for s in turns.labels()}
    baselines = {}
    for speaker, mask in masks.items():
        voiced = mask & (frames.f0_semitones > 0)
        if mask.sum() >= 100 and voiced.sum() >= 50:
            baselines[speaker] = (frames.loudness[mask], frames.f0_semitones[voiced])

    out = []
    for window in windows:
        speaker, start, end = window.speaker, window.start, window.end
        if speaker not in baselines:
            out.append(VoiceArousal(None, 0.0))
            continue
        lo, hi = int(start / frames.hop_s), int(end / frames.hop_s)
        mask = np.zeros(len(frames.loudness), dtype=bool)
        mask[lo:hi] = True
        mask &= masks[speaker]
        voiced = mask & (frames.f0_semitones > 0)
        if mask.sum() < 50 or voiced.sum() < 20:
            out.append(VoiceArousal(None, 0.0))
            continue
        loud_ref, f0_ref = baselines[speaker]
        z_loud = _robust_z(float(frames.loudness[mask].mean()), loud_ref)
        z_pitch = _robust_z(float(np.median(frames.f0_semitones[voiced])), f0_ref)
        f0_range = float(np.subtract(*np.percentile(frames.f0_semitones[voiced], [90, 10])))
        ref_range = float(np.subtract(*np.percentile(f0_ref, [90, 10])))
        z_range = (f0_range - ref_range) / max(ref_range, 1.0)
        # Weights: loudness and pitch level carry most of the arousal signal in eGeMAPS studies.
        combined = 0.45 * z_loud + 0.4 * z_pitch + 0.15 * z_range
        arousal = float(np.tanh(combined / 1.5))
        coverage = min(1.0, voiced.sum() / 150.0)  # >= 1.5 s voiced speech -> full weight
        out.append(VoiceArousal(round(arousal, 4), round(0.8 * coverage, 4)))
    return out


# Two timed steps: the call's frames once per channel, then the windows' arousal from them.
FEATURES_STAGE = contract.Stage(
    "voice_features", backend=lambda settings: settings.voice.backend, run=extract_frames,
    model_key="voice_affect", model_version=model_version,
)
STAGE = contract.Stage(
    "voice_affect", backend=lambda settings: settings.voice.backend, run=score_windows,
    model_key="voice_affect", model_version=model_version,
)
