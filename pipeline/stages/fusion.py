"""Late fusion: per-modality scores + confidences -> per speaker, per window valence/arousal.

Each fused value is a confidence-weighted mean of the modalities present, shrunk toward
neutral (0) by a prior weight, so a window with little evidence reads as "unsure, near
neutral" rather than as a confident extreme. Missing modalities are allowed.
"""

from __future__ import annotations

import math

from pyannote.core import Annotation, Segment

from pipeline.settings import AffectSettings
from pipeline.records import NO_FACE, AffectQuarter, AffectWindow, FaceEvidence, SpeakerWindow, TextValence, Utterance, VoiceArousal
from pipeline.stages import contract

PRIOR_WEIGHT = 0.25
MIN_SPEECH_IN_WINDOW_S = 1.0




def speaker_windows(turns: Annotation, settings: AffectSettings) -> list[SpeakerWindow]:
    """Sliding windows over each speaker's active span, kept where they actually speak."""
    out = []
    for speaker in sorted(turns.labels()):
        timeline = turns.label_timeline(speaker)
        start, end = timeline.extent().start, timeline.extent().end
        t = start
        while t < end:
            window = Segment(t, min(t + settings.window_s, end))
            if timeline.crop(window).duration() >= MIN_SPEECH_IN_WINDOW_S:
                out.append(SpeakerWindow(speaker, round(window.start, 3), round(window.end, 3)))
            t += settings.hop_s
    return out


def _text_in_window(
    window: SpeakerWindow, utterances: list[Utterance], text: dict[int, TextValence]
) -> tuple[float | None, float]:
    speaker, start, end = window.speaker, window.start, window.end
    total_w, total_v, total_c = 0.0, 0.0, 0.0
    for u in utterances:
        if u.speaker != speaker:
            continue
        overlap = min(end, u.end) - max(start, u.start)
        if overlap <= 0:
            continue
        score = text.get(u.utterance_id)
        if score is None:  # not read (policy or consent)
            continue
        share = overlap / max(u.end - u.start, 1e-3)
        weight = share * score.confidence
        total_w += weight
        total_v += weight * score.valence
        total_c += share * score.confidence
    if total_w <= 0:
        return None, 0.0
    return total_v / total_w, min(1.0, total_c)


def _shrink(values: list[tuple[float | None, float, float]]) -> tuple[float, float]:
    """(value, confidence, weight) per modality -> fused value and confidence."""
    num = sum(v * c * w for v, c, w in values if v is not None)
    den = sum(c * w for v, c, w in values if v is not None)
    fused = num / (den + PRIOR_WEIGHT) if den > 0 else 0.0
    return max(-1.0, min(1.0, fused)), den / (den + PRIOR_WEIGHT)


def fuse(
    windows: list[SpeakerWindow],
    utterances: list[Utterance],
    text_scores: list[TextValence],
    voice_scores: list[VoiceArousal],
    settings: AffectSettings,
    face_scores: list[FaceEvidence] | None = None,
) -> list[AffectWindow]:
    text_by_id = {t.utterance_id: t for t in text_scores}
    face_scores = face_scores if face_scores is not None else [NO_FACE] * len(windows)
    out = []
    for window, voice, face in zip(windows, voice_scores, face_scores, strict=True):
        text_valence, text_conf = _text_in_window(window, utterances, text_by_id) if text_by_id else (None, 0.0)
        valence, valence_conf = _shrink(
            [(text_valence, text_conf, settings.text_valence_weight), (face.valence, face.confidence, settings.face_weight)]
        )
        arousal, arousal_conf = _shrink(
            [(voice.arousal, voice.confidence, 1.0), (face.arousal, face.confidence, settings.face_weight)]
        )
        modalities = tuple(
            m for m, v in (("text", text_valence), ("voice", voice.arousal), ("face", face.valence)) if v is not None
        )
        out.append(
            AffectWindow(
                speaker=window.speaker,
                start=window.start,
                end=window.end,
                valence=round(valence, 4),
                arousal=round(arousal, 4),
                confidence=round((valence_conf + arousal_conf) / 2.0, 4),
                text_valence=None if text_valence is None else round(text_valence, 4),
                voice_valence=None,
                voice_arousal=voice.arousal,
                modalities=modalities,
                face_valence=None if face.valence is None else round(face.valence, 4),
                face_arousal=None if face.arousal is None else round(face.arousal, 4),
            )
        )
    return out


def quarter_of(start: float, end: float, duration_s: float) -> int:
    """The quarter (1..4) of the call holding a window's midpoint; a midpoint on a boundary opens
    the next quarter (as sql/facts/fct_speaker_affect_quarters.sql computes it for older calls)."""
    return min(4, 1 + math.floor(4 * ((start + end) / 2) / duration_s))


def quarter_summary(windows: list[AffectWindow], duration_s: float) -> list[AffectQuarter]:
    """Each speaker's windows summed per quarter of the call, weighted by confidence x length."""
    if duration_s <= 0:
        return []
    sums: dict[tuple[str, int], list[float]] = {}
    for w in windows:
        weight = w.confidence * (w.end - w.start)
        acc = sums.setdefault((w.speaker, quarter_of(w.start, w.end, duration_s)), [0, 0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += weight
        acc[2] += w.valence * weight
        acc[3] += w.arousal * weight
    return [
        AffectQuarter(
            speaker=speaker, quarter=quarter, windows=int(n), weight_s=weight,
            valence=valence / weight if weight > 0 else None, arousal=arousal / weight if weight > 0 else None,
        )
        for (speaker, quarter), (n, weight, valence, arousal) in sorted(sums.items())
    ]


STAGE = contract.Stage("fusion", backend=contract.fixed("python"), run=fuse)
