"""analyze_call: one recording in, the call's tables, RTTM, WebVTT, review snippets and manifest out.

The stages run in the order of the README's stage table, each through its ``STAGE`` (see
``pipeline.stages.contract``) and timed:

    decode -> per channel (or the mono mix): speech_activity -> diarization -> transcription
    -> attribution (the parties merged) -> redaction -> roles -> conversation
    -> inference_policy (whose emotions may be read, per modality: customers with consent)
    -> the face branch (video, with consent) -> text_affect -> voice_features -> voice_affect
    -> fusion -> flags -> review_snippets (``pipeline.call.snippets``)
    -> one row builder per table (``pipeline.call.tables``)

Unusable input never raises: it returns a quarantined result with a one-line reason, so one
bad call cannot sink a batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Timeline

from pipeline import __version__
from pipeline import metadata as call_metadata
from pipeline.call import snippets
from pipeline.call.exports import CallResult, to_rttm, to_webvtt
from pipeline.call.tables import CallAnalysis, build_tables
from pipeline.clock import utc_now
from pipeline.manifest import CallManifest
from pipeline.metadata import CallMetadata, MetadataError
from pipeline.records import (
    AffectWindow,
    ClipModel,
    FaceBranchResult,
    InferencePolicy,
    SpeakerHints,
    TextValence,
    Utterance,
    VoiceArousal,
    Word,
)
from pipeline.schemas import SCHEMA_VERSION
from pipeline.settings import Settings
from pipeline.stages import contract, flags, fusion, inference_policy
from pipeline.stages.audio import channels, diarization, speech_activity, transcription
from pipeline.stages.text import attribution, conversation, redaction, roles, text_affect
from pipeline.stages.vision import face_branch
from pipeline.stages.voice import voice_affect
from pipeline.storage import model_store
from pipeline.storage.media import DecodedAudio, MediaError, decode_audio

log = logging.getLogger(__name__)

DECODE = contract.Stage("decode", backend=contract.fixed("pyav"), run=decode_audio)
# The audio and text path, in order; the face branch times its own parts (face_branch.PARTS).
STAGES = (
    DECODE, speech_activity.STAGE, diarization.STAGE, transcription.STAGE, attribution.STAGE,
    redaction.STAGE, roles.STAGE, conversation.STAGE, inference_policy.STAGE, text_affect.STAGE,
    voice_affect.FEATURES_STAGE, voice_affect.STAGE, fusion.STAGE, flags.STAGE, snippets.STAGE,
)


class _Timer:
    def __init__(self, progress: Callable[[str], None] | None):
        self.seconds: dict[str, float] = {}
        self._progress = progress

    def run(self, stage: contract.Stage, *args, **kwargs):
        """Run the stage's entry function; its time adds up over channels."""
        t0 = time.perf_counter()
        result = stage.run(*args, **kwargs)
        self.record({stage.name: time.perf_counter() - t0})
        return result

    def record(self, seconds: dict[str, float]) -> None:
        """Add times measured elsewhere (the face branch times its own parts)."""
        for stage, spent in seconds.items():
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + spent, 3)
            if self._progress:
                self._progress(f"{stage}: {spent:.1f} s")


@dataclass
class _Part:
    """What one channel (or the mono mix) yields before the parties are merged."""

    samples: np.ndarray
    sample_rate: int
    channel: int | None
    speech: Timeline
    turns: Annotation
    words: list[Word]
    labels: set[str] = field(default_factory=set)  # final speaker labels, set when merged


def analyze_call(
    media_path: str | Path,
    call_id: str,
    *,
    settings: Settings,
    call_date: str | None = None,
    metadata: CallMetadata | dict | None = None,
    source_uri: str | None = None,
    progress: Callable[[str], None] | None = None,
    clip: ClipModel | None = None,
) -> CallResult:
    """Analyse one recording. ``metadata`` is checked against the contract (pipeline.metadata)
    first: invalid metadata quarantines the call before any analysis. ``clip`` is a shared
    heavy clip model (the batch's actor); without it the one configured in
    ``settings.vision.clip_model`` (if any) is loaded in-process."""
    try:
        meta, bad_metadata = call_metadata.validate(metadata if metadata is not None else {}), None
    except MetadataError as exc:
        meta, bad_metadata = CallMetadata(), str(exc)
    manifest = CallManifest(
        call_id=call_id, status="ok", source_uri=source_uri or str(media_path),
        call_date=call_date or meta.call_date or dt.date.today().isoformat(), pipeline_version=__version__,
        schema_version=SCHEMA_VERSION, settings_fingerprint=settings.fingerprint(), created_at=utc_now().isoformat(),
        subject_id=meta.subject_id,
    )
    timer = _Timer(progress)
    if bad_metadata:
        return _quarantined(manifest, bad_metadata, timer)
    try:
        audio = timer.run(DECODE, media_path, sample_rate=settings.audio.sample_rate,
                          min_duration_s=settings.audio.min_duration_s, max_duration_s=settings.audio.max_duration_s)
    except MediaError as exc:
        return _quarantined(manifest, str(exc), timer)
    except FileNotFoundError:
        return _quarantined(manifest, "input file not found", timer)
    manifest.sha256 = audio.info.sha256
    manifest.duration_s = round(audio.duration_s, 3)
    try:
        analysis = _analyze_audio(media_path, audio, manifest, meta, settings, timer, clip)
    except _NoSpeech as exc:
        return _quarantined(manifest, str(exc), timer)
    manifest.versions = analysis.versions
    manifest.stage_seconds = timer.seconds
    tables = build_tables(analysis)
    manifest.tables = {name: t.num_rows for name, t in tables.items()}
    return CallResult(
        manifest=manifest, tables=tables, rttm=to_rttm(analysis.turns, call_id),
        vtt=to_webvtt(analysis.utterances, analysis.roles.roles), snippets=analysis.snippets.audio,
    )


class _NoSpeech(Exception):
    pass


def _analyze_audio(media_path, audio: DecodedAudio, manifest: CallManifest, meta: CallMetadata,
                   settings: Settings, timer: _Timer, clip: ClipModel | None) -> CallAnalysis:
    """Every stage after decoding, in the order of the module's docstring."""
    layout = channels.detect_layout(audio.channels, audio.sample_rate)
    parts = _analyze_parts(audio, layout.kind == "stereo", meta, settings, timer)
    speech_s = sum(p.speech.duration() for p in parts) if layout.kind == "mono" else _union_duration(parts)
    if speech_s < settings.audio.min_duration_s:
        raise _NoSpeech(f"no speech detected in {audio.duration_s:.1f} s of audio")
    turns, utterances, speaker_channel = _merge_parts(parts, timer)
    # PII leaves the transcript before anything downstream (affect, flags, tables, VTT) sees it.
    utterances, redacted = timer.run(redaction.STAGE, utterances, settings.redaction)
    role_map = timer.run(roles.STAGE, turns, utterances, meta.roles,
                         speaker_channel if layout.kind == "stereo" else None, meta.channels)
    talk = timer.run(conversation.STAGE, turns, utterances, audio.duration_s)
    # Whose emotions may be read is decided before any affect model runs: they see only that.
    policy = timer.run(inference_policy.STAGE, role_map, meta, settings.policy)
    faces, face_basis = _run_face_branch(media_path, audio.info.has_video, turns, settings, meta.consent.video,
                                         policy, timer, clip)
    if faces is not None and faces.error:
        manifest.warnings.append(f"video: {faces.error}; faces read from the part before it")
    text_scores, affect = _affect(parts, turns, utterances, faces, policy, settings, timer)
    customers = {s for s, r in role_map.roles.items() if r == roles.CUSTOMER}
    call_flags = timer.run(flags.STAGE, affect, customers, utterances, settings.flags, manifest.call_id)
    # Cut now: the raw media is deleted by retention, and reviewers still need to hear the flag.
    review = timer.run(snippets.STAGE, audio.samples, audio.sample_rate, call_flags, redacted, meta.consent,
                       settings.snippets)
    return CallAnalysis(
        call_id=manifest.call_id, call_date=manifest.call_date, manifest=manifest, media=audio.info,
        duration_s=audio.duration_s, speech_s=speech_s, layout=layout, turns=turns, utterances=utterances,
        redacted=redacted, roles=role_map, talk=talk, policy=policy, text_scores=text_scores, affect=affect,
        flags=call_flags, faces=faces, face_basis=face_basis, stage_seconds=timer.seconds,
        stage_info={s.name: s.info(settings) for s in STAGES} | face_branch.parts_info(settings, faces),
        versions=_versions(settings, faces), processed_at=utc_now(), snippets=review,
        agent_id=meta.agent_id, queue=meta.queue,
    )


def _analyze_parts(audio: DecodedAudio, stereo: bool, meta: CallMetadata, settings: Settings, timer: _Timer) -> list[_Part]:
    if stereo:
        # One party per channel: each channel is analysed alone, then the parties are merged.
        per_channel = SpeakerHints(1, settings.diarization.max_speakers_per_channel)
        return [
            _analyze_part(audio.channels[c], audio.sample_rate, c, audio.channels[1 - c], per_channel, settings, timer)
            for c in (0, 1)
        ]
    hints = SpeakerHints(min_speakers=meta.min_speakers, max_speakers=meta.max_speakers)
    return [_analyze_part(audio.samples, audio.sample_rate, None, None, hints, settings, timer)]


def _analyze_part(samples: np.ndarray, sample_rate: int, channel: int | None, other: np.ndarray | None,
                  hints: SpeakerHints, settings: Settings, timer: _Timer) -> _Part:
    speech = timer.run(speech_activity.STAGE, samples, sample_rate, settings.vad, one_party=other is not None)
    if other is not None:
        speech = channels.drop_crosstalk(speech, samples, other, sample_rate)
    turns = timer.run(diarization.STAGE, samples, sample_rate, speech, settings, hints)
    words = timer.run(transcription.STAGE, samples, sample_rate, speech, settings.transcription,
                      resolve=functools.partial(model_store.resolve_model_path, settings=settings),
                      one_party=other is not None)
    return _Part(samples, sample_rate, channel, speech, turns, words)


def _run_face_branch(media_path, has_video: bool, turns: Annotation, settings: Settings, video_consent: bool,
                     policy: InferencePolicy, timer: _Timer, clip: ClipModel | None) -> tuple[FaceBranchResult | None, str]:
    """The face branch, when the call has video, consent and the branch is on; else why not.
    Expressions are read only for the speakers the policy allows."""
    if not has_video:
        return None, "no video stream"
    if not video_consent:
        return None, "consent.video=false"
    if not settings.vision.enabled:
        return None, "vision.enabled=false"
    readable = policy.speakers("face_expression")
    if not readable:  # faces would be found and followed for nothing: data minimisation
        return None, "no speaker's face may be read (inference policy)"
    result = face_branch.analyze_video(media_path, turns, settings, readable=readable,
                                       clip=clip or face_branch.clip_model(settings))
    timer.record(result.seconds)
    return result, "consent.video=true"


def _affect(parts: list[_Part], turns: Annotation, utterances: list[Utterance], faces: FaceBranchResult | None,
            policy: InferencePolicy, settings: Settings, timer: _Timer) -> tuple[list[TextValence], list[AffectWindow]]:
    """Text, voice and face readings per speaker window, fused, for the speakers and modalities the
    policy allows; nothing else is read at all (a speaker with none allowed has no windows)."""
    readable_text = policy.speakers("text_valence")
    read_utterances = [u for u in utterances if u.speaker in readable_text]
    text_scores = timer.run(text_affect.STAGE, read_utterances) if read_utterances else []
    windows = [w for w in fusion.speaker_windows(turns, settings.affect) if w.speaker in policy.speakers()]
    voice_scores = [VoiceArousal(None, 0.0)] * len(windows)
    readable_voice = policy.speakers("voice_arousal")
    if readable_voice:
        # Each party's voice is read from its own channel when it has one.
        for part in parts:
            own = [i for i, window in enumerate(windows) if window.speaker in part.labels and window.speaker in readable_voice]
            if not own:
                continue
            frames = timer.run(voice_affect.FEATURES_STAGE, part.samples, part.sample_rate, settings.voice)
            # Baselines too come only from readable speakers' turns.
            scores = timer.run(voice_affect.STAGE, frames, turns.subset(readable_voice), [windows[i] for i in own])
            for i, score in zip(own, scores):
                voice_scores[i] = score
    face_scores = face_branch.face_evidence(windows, faces, settings.vision.sample_fps)
    affect = timer.run(fusion.STAGE, windows, utterances, text_scores, voice_scores, settings.affect, face_scores)
    return text_scores, affect


def _union_duration(parts: list[_Part]) -> float:
    union = Timeline([seg for p in parts for seg in p.speech])
    return union.support().duration()


def _merge_parts(parts: list[_Part], timer: _Timer) -> tuple[Annotation, list[Utterance], dict[str, int]]:
    """One Annotation and utterance list for the call; labels SPEAKER_00.. by first appearance.

    Words are attributed within their own part, so a word on the customer's channel can never
    be given to the agent during overlapping speech.
    """
    firsts = sorted(
        ((p.turns.label_timeline(label)[0].start, i, label) for i, p in enumerate(parts) for label in p.turns.labels())
    )
    rename = {(i, label): f"SPEAKER_{n:02d}" for n, (_, i, label) in enumerate(firsts)}
    merged = Annotation()
    utterances: list[Utterance] = []
    speaker_channel: dict[str, int] = {}
    for i, part in enumerate(parts):
        mapping = {label: rename[(i, label)] for label in part.turns.labels()}
        part.labels = set(mapping.values())
        for seg, track, label in part.turns.itertracks(yield_label=True):
            merged[seg, f"{i}-{track}"] = mapping[label]
        for u in timer.run(attribution.STAGE, part.words, part.turns):
            utterances.append(dataclasses.replace(u, speaker=mapping.get(u.speaker, u.speaker)))
        if part.channel is not None:
            speaker_channel.update({new: part.channel for new in mapping.values()})
    utterances.sort(key=lambda u: (u.start, u.speaker))
    utterances = [dataclasses.replace(u, utterance_id=n) for n, u in enumerate(utterances)]
    return merged, utterances, speaker_channel


def _quarantined(manifest: CallManifest, reason: str, timer: _Timer) -> CallResult:
    log.warning("call %s quarantined: %s", manifest.call_id, reason)
    manifest.quarantine(reason)
    manifest.stage_seconds = timer.seconds
    return CallResult(manifest=manifest)


def expected_versions(settings: Settings, video: bool = False) -> dict[str, str]:
    """The manifest.versions an analysis under ``settings`` would record, without running anything:
    the audio and text path's models (incl. the "flags" rule version) whose version the settings
    fix, and with ``video`` the face branch's light models. Left out: versions known only once a
    model is loaded (a stage's ``model_version`` gives None) and the heavy clip model's."""
    versions = _versions(settings, None)
    if video:
        from pipeline.stages.vision import face_detection, face_expression

        versions |= {"face_detection": face_detection.model_version(), "face_expression": face_expression.model_version()}
    return versions


def _versions(settings: Settings, faces: FaceBranchResult | None) -> dict[str, str]:
    """manifest.versions: every model the audio and text path used, and the face branch's."""
    versions = {s.model_key: v for s in STAGES if s.model_key and (v := s.model_version(settings)) is not None}
    return versions | (faces.versions if faces is not None else {})
