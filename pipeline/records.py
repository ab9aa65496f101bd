"""The records that pass between stages: one home, frozen and typed.

A stage takes some of these and returns others; ``pipeline.call`` turns them into table rows
(``pipeline.schemas`` holds the Parquet schemas). Speaker turns travel as ``pyannote.core``
objects (``Annotation``, ``Timeline``), as pyannote's own pipeline passes them. Records that
never leave one stage's module (a tracker's open tracks, a lexer's tokens) stay in that module.
Times are seconds from the start of the recording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# --- audio -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelLayout:
    """Whether the call is one mix or one party per channel, and why we think so."""

    kind: Literal["mono", "stereo"]
    reason: str


@dataclass(frozen=True)
class SpeakerHints:
    """Optional bounds from call metadata (e.g. a known two-party call)."""

    min_speakers: int = 1
    max_speakers: int | None = None


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str  # with its leading space as Whisper emits it, stripped on output
    probability: float


# --- text --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """One speaker's run of words, attributed to a diarized turn."""

    utterance_id: int
    speaker: str
    start: float
    end: float
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.words)

    @property
    def asr_confidence(self) -> float:
        return sum(w.probability for w in self.words) / len(self.words)


@dataclass(frozen=True)
class RedactedSpan:
    """Where personal data was taken out of the transcript (the kind, never the value)."""

    utterance_id: int
    kind: str
    start: float  # from the redacted words' times
    end: float


@dataclass(frozen=True)
class RoleAssignment:
    roles: dict[str, str]  # speaker -> role
    agent_confidence: float
    source: str  # "metadata", "channel_map", "channel_cues" or "cues"


Inference = Literal["text_valence", "voice_arousal", "face_expression"]
Audience = Literal["quality", "coaching"]


@dataclass(frozen=True)
class InferenceDecision:
    """Whether one kind of emotion inference may be made about one speaker, and why."""

    speaker: str
    role: str | None
    inference: Inference
    allowed: bool
    rule: str  # the policy rule that decided (pipeline.stages.inference_policy)
    consent: str | None  # the consent it read, e.g. "consent.voice_affect=true"; None when none applies
    reason: str  # one line for the audit's basis
    audience: Audience | None = None  # where an allowed result may go: quality marts, or coaching only


@dataclass(frozen=True)
class InferencePolicy:
    """Every decision of one call: per speaker, per inference."""

    decisions: tuple[InferenceDecision, ...]

    def decision(self, speaker: str, inference: Inference) -> InferenceDecision | None:
        return next((d for d in self.decisions if d.speaker == speaker and d.inference == inference), None)

    def allowed(self, speaker: str, inference: Inference) -> bool:
        d = self.decision(speaker, inference)
        return d is not None and d.allowed

    def speakers(self, inference: Inference | None = None, audience: Audience | None = None) -> set[str]:
        """Speakers with an allowed inference (of this kind, for this audience, when given)."""
        return {
            d.speaker for d in self.decisions
            if d.allowed and (inference is None or d.inference == inference) and (audience is None or d.audience == audience)
        }


@dataclass(frozen=True)
class SpeakerMetrics:
    speaker: str
    talk_s: float
    talk_share: float
    n_turns: int
    n_words: int
    words_per_minute: float | None
    interruptions_made: int
    interruptions_received: int
    longest_monologue_s: float


@dataclass(frozen=True)
class CallMetrics:
    non_talk_s: float
    overlap_s: float
    speakers: list[SpeakerMetrics]


@dataclass(frozen=True)
class TextValence:
    utterance_id: int
    valence: float
    confidence: float


# --- voice -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceFrames:
    """Per-10 ms voice cues (BS.1770 loudness and pYIN pitch by default, or openSMILE's eGeMAPS
    descriptors): only what the arousal estimate uses."""

    loudness: np.ndarray
    f0_semitones: np.ndarray  # 0 where unvoiced
    hop_s: float


@dataclass(frozen=True)
class VoiceArousal:
    arousal: float | None
    confidence: float


# --- affect over time --------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeakerWindow:
    """A fixed window of one speaker's talk: the unit every modality is scored and fused on."""

    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class FaceEvidence:
    """The speaker's linked face over one window (``face_branch.face_evidence``)."""

    valence: float | None
    arousal: float | None
    confidence: float


NO_FACE = FaceEvidence(None, None, 0.0)


@dataclass(frozen=True)
class AffectWindow:
    """Fused valence/arousal of one speaker window, with what each modality said."""

    speaker: str
    start: float
    end: float
    valence: float
    arousal: float
    confidence: float
    text_valence: float | None
    voice_valence: float | None
    voice_arousal: float | None
    modalities: tuple[str, ...]
    face_valence: float | None = None
    face_arousal: float | None = None


@dataclass(frozen=True)
class AffectQuarter:
    """One speaker's fused affect over one quarter of the call (by window midpoint), summed so that
    calls and days average exactly as their windows would: what the trends keep once retention
    has deleted the windows."""

    speaker: str
    quarter: int  # 1..4
    windows: int
    weight_s: float  # sum of confidence x window length ("confidence-seconds")
    valence: float | None  # weight_s-weighted means; None when weight_s is 0
    arousal: float | None


@dataclass(frozen=True)
class Flag:
    """A customer-frustration segment for QA review: a probability, never a verdict."""

    flag_id: str
    speaker: str
    start: float
    end: float
    score: float
    confidence: float
    mean_valence: float
    mean_arousal: float
    evidence: str


# --- faces -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceTrack:
    """A face track's summary: where and when it was, and whose it is. No image data."""

    track_id: int
    first_s: float
    last_s: float
    n_detections: int
    n_usable: int
    rejected: dict[str, int]  # face quality-check reason -> faces
    mean_face_px: float
    box: tuple[float, float, float, float]  # mean box as a share of the frame (x0, y0, x1, y1)
    speaker: str | None
    link_confidence: float
    link_evidence: str


@dataclass(frozen=True)
class FaceAffectWindow:
    """Expression of one track over a window (the light model) or a 16-frame clip (the heavy one)."""

    track_id: int
    start: float
    end: float
    n_frames: int
    probs: tuple[float, ...]  # in face_expression.EMOTIONS order
    valence: float
    arousal: float
    confidence: float
    model: str


@dataclass(frozen=True)
class FaceSeries:
    """Per usable face of one track, for fusion: time and the light model's reading."""

    times: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class FaceBranchResult:
    """What the face branch returns for one call. Crops, landmarks and patches never leave it."""

    tracks: list[FaceTrack]
    affect: list[FaceAffectWindow]
    frames_sampled: int
    seconds: dict[str, float]
    versions: dict[str, str]
    clip_device: str | None = None  # where the heavy clip model ran, when it did
    series: dict[int, FaceSeries] = field(default_factory=dict)  # track id -> usable faces
    error: str | None = None  # set when the video broke mid-way; results cover what was read


@dataclass(frozen=True)
class ClipModel:
    """The heavy clip model as the face branch sees it: a batch function, its classes, its version.

    ``classify`` may run in-process (ONNX Runtime here) or forward to a shared GPU actor that
    batches clips across calls (``pipeline.compute.clip_server``); the branch does not care which.
    """

    classify: Callable[[np.ndarray], np.ndarray]  # (N, 16, 160, 160, 3) uint8 RGB -> (N, C) probs
    classes: tuple[str, ...]
    version: str
    device: str = "cpu"  # where the model actually runs (its session's first provider)
