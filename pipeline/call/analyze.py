"""analyze_call: one recording in, the call's tables, RTTM, WebVTT and manifest out.

Stages run in order, each timed. Unusable input never raises: it returns a quarantined
result with a one-line reason, so one bad call cannot sink a batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import numpy as np
from pyannote.core import Annotation, Timeline

from pipeline import __version__
from pipeline.storage import model_store
from pipeline.stages.vision import face_branch
from pipeline import metadata as call_metadata
from pipeline.manifest import CallManifest
from pipeline.metadata import CallMetadata, Consent, MetadataError
from pipeline.storage.media import MediaError, decode_audio
from pipeline.schemas import SCHEMA_VERSION, to_table
from pipeline.settings import Settings
from pipeline.stages.text import attribution, redaction, conversation, roles, text_affect
from pipeline.stages.audio import channels, diarization, speech_activity, transcription
from pipeline.stages import flags, fusion
from pipeline.stages.voice import voice_affect

log = logging.getLogger(__name__)


@dataclass
class CallResult:
    manifest: CallManifest
    tables: dict[str, pa.Table] = field(default_factory=dict)  # empty when quarantined
    rttm: str = ""
    vtt: str = ""

    @property
    def ok(self) -> bool:
        return self.manifest.status == "ok"


class _Timer:
    def __init__(self, progress: Callable[[str], None] | None):
        self.seconds: dict[str, float] = {}
        self._progress = progress

    def run(self, stage: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        spent = time.perf_counter() - t0
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + spent, 3)  # summed over channels
        if self._progress:
            self._progress(f"{stage}: {spent:.1f} s")
        return result

    def record(self, seconds: dict[str, float]) -> None:
        """Add sub-stage times measured inside a stage (the vision pass times its own parts)."""
        for stage, spent in seconds.items():
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + spent, 3)
            if self._progress:
                self._progress(f"{stage}: {spent:.1f} s")


def analyze_call(
    media_path: str | Path,
    call_id: str,
    *,
    settings: Settings,
    call_date: str | None = None,
    metadata: CallMetadata | dict | None = None,
    source_uri: str | None = None,
    progress: Callable[[str], None] | None = None,
    clip: face_branch.ClipModel | None = None,
) -> CallResult:
    """Analyse one recording. ``metadata`` is checked against the contract (pipeline.metadata)
    first: invalid metadata quarantines the call before any analysis. ``clip`` is a shared
    heavy clip model (the batch's actor); without it the one configured in
    ``settings.vision.clip_model`` (if any) is loaded in-process."""
    try:
        meta = call_metadata.validate(metadata if metadata is not None else {})
        bad_metadata = None
    except MetadataError as exc:
        meta, bad_metadata = CallMetadata(), str(exc)
    call_date = call_date or meta.call_date or dt.date.today().isoformat()
    manifest = CallManifest(
        call_id=call_id,
        status="ok",
        source_uri=source_uri or str(media_path),
        call_date=call_date,
        pipeline_version=__version__,
        schema_version=SCHEMA_VERSION,
        settings_fingerprint=settings.fingerprint(),
        created_at=_now().isoformat(),
    )
    timer = _Timer(progress)
    if bad_metadata:
        return _quarantine(manifest, bad_metadata, timer)
    try:
        audio = timer.run("decode", decode_audio, media_path, sample_rate=settings.audio.sample_rate,
                          min_duration_s=settings.audio.min_duration_s, max_duration_s=settings.audio.max_duration_s)
    except MediaError as exc:
        return _quarantine(manifest, str(exc), timer)
    except FileNotFoundError:
        return _quarantine(manifest, "input file not found", timer)
    manifest.sha256 = audio.info.sha256
    manifest.duration_s = round(audio.duration_s, 3)

    layout = channels.detect_layout(audio.channels, audio.sample_rate)
    hints = diarization.SpeakerHints(min_speakers=meta.min_speakers, max_speakers=meta.max_speakers)
    if layout.kind == "stereo":
        # One party per channel: each channel is analysed alone, then the parties are merged.
        per_channel = diarization.SpeakerHints(1, settings.diarization.max_speakers_per_channel)
        parts = [
            _analyze_part(timer, settings, audio.channels[c], audio.sample_rate, per_channel, c, audio.channels[1 - c])
            for c in (0, 1)
        ]
    else:
        parts = [_analyze_part(timer, settings, audio.samples, audio.sample_rate, hints, None, None)]
    speech_s = sum(p.speech.duration() for p in parts) if layout.kind == "mono" else _union_duration(parts)
    if speech_s < settings.audio.min_duration_s:
        return _quarantine(manifest, f"no speech detected in {audio.duration_s:.1f} s of audio", timer)
    turns, utterances, speaker_channel = timer.run("attribution", _merge_parts, parts)
    # PII leaves the transcript before anything downstream (affect, flags, tables, VTT) sees it.
    utterances, redacted = timer.run("redaction", redaction.redact_utterances, utterances, settings.redaction)
    role_map = timer.run("roles", roles.assign_roles, turns, utterances, meta.roles,
                         speaker_channel if layout.kind == "stereo" else None, meta.channels)
    talk = timer.run("conversation", conversation.conversation_metrics, turns, utterances, audio.duration_s)

    consent = meta.consent
    faces, face_basis = _run_vision(media_path, audio.info.has_video, turns, settings, consent, timer, clip)
    if faces is not None and faces.error:
        manifest.warnings.append(f"video: {faces.error}; faces read from the part before it")
    text_scores = timer.run("text_affect", text_affect.score_utterances, utterances) if consent.text_affect else []
    windows = fusion.speaker_windows(turns, settings.affect)
    voice_scores = [voice_affect.VoiceArousal(None, 0.0)] * len(windows)
    if consent.voice_affect:
        # Each party's voice is read from its own channel when it has one.
        for part in parts:
            own = [i for i, (speaker, _, _) in enumerate(windows) if speaker in part.labels]
            if not own:
                continue
            frames = timer.run("voice_features", voice_affect.extract_frames, part.samples, audio.sample_rate)
            scores = timer.run("voice_affect", voice_affect.score_windows, frames, turns, [windows[i] for i in own])
            for i, score in zip(own, scores):
                voice_scores[i] = score
    face_scores = face_branch.face_evidence(windows, faces, settings.vision.sample_fps)
    affect = timer.run("fusion", fusion.fuse, windows, utterances, text_scores, voice_scores, settings.affect, face_scores)
    customers = {s for s, r in role_map.roles.items() if r == roles.CUSTOMER}
    call_flags = timer.run("flags", flags.frustration_flags, affect, customers, utterances, settings.flags, call_id)

    versions = _versions(settings) | (faces.versions if faces is not None else {})
    manifest.versions = versions
    manifest.stage_seconds = timer.seconds
    tables = _tables(
        call_id, call_date, manifest, audio, speech_s, turns, utterances, text_scores,
        affect, call_flags, role_map, consent, timer.seconds, versions, talk, layout, _stage_info(settings, faces), redacted,
        faces, face_basis,
    )
    manifest.tables = {name: t.num_rows for name, t in tables.items()}
    return CallResult(
        manifest=manifest, tables=tables, rttm=to_rttm(turns, call_id), vtt=to_webvtt(utterances, role_map.roles)
    )


@dataclass
class _Part:
    """What one channel (or the mono mix) yields before the parties are merged."""

    samples: np.ndarray
    channel: int | None
    speech: Timeline
    turns: Annotation
    words: list[transcription.Word]
    labels: set[str] = field(default_factory=set)  # final speaker labels, set when merged


def _analyze_part(timer, settings: Settings, samples, sample_rate, hints, channel, other) -> _Part:
    speech = timer.run("speech_activity", speech_activity.detect_speech, samples, sample_rate, settings.vad,
                       one_party=other is not None)
    if other is not None:
        speech = channels.drop_crosstalk(speech, samples, other, sample_rate)
    turns = timer.run("diarization", _diarize, samples, sample_rate, speech, settings, hints)
    words = timer.run("transcription", transcription.transcribe, samples, sample_rate, speech, settings.transcription,
                      resolve=functools.partial(model_store.resolve_model_path, settings=settings),
                      one_party=other is not None)
    return _Part(samples, channel, speech, turns, words)


def _run_vision(media_path, has_video: bool, turns: Annotation, settings: Settings, consent: Consent,
                timer: _Timer, clip: face_branch.ClipModel | None) -> tuple[face_branch.VisionResult | None, str]:
    """The face branch, when the call has video, consent and the branch is on; else why not."""
    if not has_video:
        return None, "no video stream"
    if not consent.video:
        return None, "consent.video=false"
    if not settings.vision.enabled:
        return None, "face_branch.enabled=false"
    result = face_branch.analyze_video(media_path, turns, settings, clip=clip or face_branch.clip_model(settings))
    timer.record(result.seconds)
    return result, "consent.video=true"


def _diarize(samples, sample_rate, speech, settings: Settings, hints) -> Annotation:
    backend = settings.diarization.backend
    if backend == "embedded":
        return diarization.diarize(samples, sample_rate, speech, settings.diarization, hints)
    if backend == "pyannote":
        from pipeline.stages.audio import pyannote_diarizer  # torch + pyannote.audio: only when chosen

        return pyannote_diarizer.diarize_pyannote(samples, sample_rate, settings, hints)
    raise ValueError(f"unknown diarization backend {backend!r} (embedded, pyannote)")


def _union_duration(parts: list[_Part]) -> float:
    union = Timeline([seg for p in parts for seg in p.speech])
    return union.support().duration()


def _merge_parts(parts: list[_Part]) -> tuple[Annotation, list[attribution.Utterance], dict[str, int]]:
    """One Annotation and utterance list for the call; labels SPEAKER_00.. by first appearance.

    Words are attributed within their own part, so a word on the customer's channel can never
    be given to the agent during overlapping speech.
    """
    firsts = sorted(
        ((p.turns.label_timeline(label)[0].start, i, label) for i, p in enumerate(parts) for label in p.turns.labels())
    )
    rename = {(i, label): f"SPEAKER_{n:02d}" for n, (_, i, label) in enumerate(firsts)}
    merged = Annotation()
    utterances: list[attribution.Utterance] = []
    speaker_channel: dict[str, int] = {}
    for i, part in enumerate(parts):
        mapping = {label: rename[(i, label)] for label in part.turns.labels()}
        part.labels = set(mapping.values())
        for seg, track, label in part.turns.itertracks(yield_label=True):
            merged[seg, f"{i}-{track}"] = mapping[label]
        for u in attribution.build_utterances(part.words, part.turns):
            utterances.append(dataclasses.replace(u, speaker=mapping.get(u.speaker, u.speaker)))
        if part.channel is not None:
            speaker_channel.update({new: part.channel for new in mapping.values()})
    utterances.sort(key=lambda u: (u.start, u.speaker))
    utterances = [dataclasses.replace(u, utterance_id=n) for n, u in enumerate(utterances)]
    return merged, utterances, speaker_channel


def _quarantine(manifest: CallManifest, reason: str, timer: _Timer) -> CallResult:
    log.warning("call %s quarantined: %s", manifest.call_id, reason)
    manifest.status = "quarantined"
    manifest.reason = reason
    manifest.stage_seconds = timer.seconds
    return CallResult(manifest=manifest)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _versions(settings: Settings) -> dict[str, str]:
    return {
        "speech_activity": speech_activity.model_version(),
        "diarization": _diarization_version(settings),
        "transcription": transcription.model_version(settings.transcription),
        "text_affect": text_affect.model_version(),
        "voice_affect": voice_affect.model_version(),
        "flags": flags.RULE_VERSION,
    }


def _diarization_version(settings: Settings) -> str:
    if settings.diarization.backend == "pyannote":
        from pipeline.stages.audio import pyannote_diarizer

        return pyannote_diarizer.model_version(settings)
    return diarization.model_version()


def _stage_info(settings: Settings, faces: face_branch.VisionResult | None = None) -> dict[str, tuple[str, str | None, str]]:
    """stage -> (backend, key into the versions dict, device) for the stage_metrics table."""

    def device(name: str) -> str:
        import torch

        return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"

    d, t = settings.diarization, settings.transcription
    diarizer = diarization.BACKEND if d.backend == "embedded" else d.backend
    # The heavy model's version starts with its runtime: mae-dfer-onnx or mae-dfer-torch.
    clip_backend = ((faces.versions if faces else {}).get("face_expression_clips") or "mae-dfer-onnx").split(":")[0]
    return {
        "decode": ("pyav", None, "cpu"),
        "speech_activity": (speech_activity.BACKEND, "speech_activity", "cpu"),
        "diarization": (diarizer, "diarization", "cpu" if d.backend == "embedded" else device(d.device)),
        "transcription": (t.backend, "transcription", device(t.device)),
        "text_affect": (text_affect.BACKEND, "text_affect", "cpu"),
        "voice_features": (voice_affect.BACKEND, "voice_affect", "cpu"),
        "voice_affect": (voice_affect.BACKEND, "voice_affect", "cpu"),
        "flags": ("rules", "flags", "cpu"),
        "video_decode": ("pyav", None, "cpu"),
        "face_detection": ("mtcnn-onnx", "face_detection", "cpu"),
        "face_tracking": ("iou-tracker", None, "cpu"),
        "face_features": ("quality-gate+mouth-patch", None, "cpu"),
        "face_expression": ("mini-xception-onnx", "face_expression", "cpu"),
        "face_expression_clips": (clip_backend, "face_expression_clips", (faces and faces.clip_device) or "cpu"),
        "face_linking": ("lip-motion", None, "cpu"),
    }


def _tables(call_id, call_date, manifest, audio, speech_s, turns: Annotation, utterances, text_scores,
            affect, call_flags, role_map, consent, seconds, versions, talk, layout, info, redacted,
            faces: face_branch.VisionResult | None, face_basis: str) -> dict[str, pa.Table]:
    role_of = role_map.roles.get
    now = _now()
    text_by_id = {t.utterance_id: t.valence for t in text_scores}
    calls = [{
        "call_id": call_id,
        "call_date": dt.date.fromisoformat(call_date),
        "source_uri": manifest.source_uri,
        "sha256": audio.info.sha256,
        "duration_s": round(audio.duration_s, 3),
        "source_sample_rate": audio.info.source_sample_rate,
        "source_channels": audio.info.source_channels,
        "has_video": audio.info.has_video,
        "speech_s": round(speech_s, 3),
        "num_speakers": len(turns.labels()),
        "language": "en",
        "processed_at": now,
        "pipeline_version": manifest.pipeline_version,
        "settings_fingerprint": manifest.settings_fingerprint,
        "non_talk_s": talk.non_talk_s,
        "overlap_s": talk.overlap_s,
        "channel_layout": layout.kind,
    }]
    speaker_turns = [
        {"call_id": call_id, "speaker": label, "role": role_of(label), "start_s": round(seg.start, 3), "end_s": round(seg.end, 3)}
        for seg, _, label in sorted(turns.itertracks(yield_label=True), key=lambda t: (t[0].start, t[2]))
    ]
    utterance_rows = [
        {
            "call_id": call_id, "utterance_id": u.utterance_id, "speaker": u.speaker,
            "role": role_of(u.speaker, "other"), "start_s": round(u.start, 3), "end_s": round(u.end, 3),
            "text": u.text, "n_words": len(u.words), "asr_confidence": round(u.asr_confidence, 4),
            "text_valence": text_by_id.get(u.utterance_id),
        }
        for u in utterances
    ]
    affect_rows = [
        {
            "call_id": call_id, "speaker": w.speaker, "role": role_of(w.speaker), "start_s": w.start, "end_s": w.end,
            "valence": w.valence, "arousal": w.arousal, "confidence": w.confidence, "text_valence": w.text_valence,
            "voice_valence": w.voice_valence, "voice_arousal": w.voice_arousal, "modalities": ",".join(w.modalities),
            "face_valence": w.face_valence, "face_arousal": w.face_arousal,
        }
        for w in affect
    ]
    flag_rows = [
        {
            "call_id": call_id, "flag_id": f.flag_id, "flag_type": flags.FLAG_TYPE, "speaker": f.speaker,
            "role": role_of(f.speaker), "start_s": round(f.start, 3), "end_s": round(f.end, 3), "score": f.score,
            "confidence": f.confidence, "mean_valence": f.mean_valence, "mean_arousal": f.mean_arousal,
            "evidence": f.evidence, "rule_version": flags.RULE_VERSION,
        }
        for f in call_flags
    ]
    duration = max(audio.duration_s, 1e-6)
    metrics = [
        {
            "call_id": call_id, "stage": stage, "seconds": secs, "real_time_factor": round(secs / duration, 5),
            "device": info.get(stage, ("", None, "cpu"))[2], "backend": info.get(stage, ("python", None, ""))[0],
            "model_version": versions.get(info.get(stage, ("", None, ""))[1] or ""),
        }
        for stage, secs in seconds.items()
    ]
    tracks = faces.tracks if faces is not None else []
    linked = {t.speaker: t for t in sorted(tracks, key=lambda t: -t.link_confidence) if t.speaker is not None}

    def face_inference(speaker: str) -> tuple[bool, str]:
        if faces is None:
            return False, face_basis
        track = linked.get(speaker)
        if track is None:
            return False, f"{face_basis}; no face track linked to this speaker"
        return True, f"{face_basis}; face track {track.track_id} linked (confidence {track.link_confidence:.2f})"

    inferences = (  # (what, performed, why, model) per speaker
        lambda s: ("text_valence", consent.text_affect, f"consent.text_affect={consent.text_affect}", versions["text_affect"]),
        lambda s: ("voice_arousal", consent.voice_affect, f"consent.voice_affect={consent.voice_affect}", versions["voice_affect"]),
        lambda s: ("face_expression", *face_inference(s), versions.get("face_expression")),
    )
    audit = [
        {
            "call_id": call_id, "inference": inference, "subject": speaker, "role": role_of(speaker),
            "performed": performed, "basis": basis, "model": model if performed else None, "recorded_at": now,
        }
        for speaker in sorted(turns.labels())
        for inference, performed, basis, model in (row(speaker) for row in inferences)
    ]
    # Faces nobody could link were still read: the audit says so, per track (never who it is).
    audit += [
        {
            "call_id": call_id, "inference": "face_expression", "subject": f"face_track:{t.track_id}", "role": None,
            "performed": t.n_usable > 0, "basis": f"{face_basis}; track not linked to a speaker",
            "model": versions.get("face_expression") if t.n_usable > 0 else None, "recorded_at": now,
        }
        for t in tracks if t.speaker is None
    ]
    kinds = sorted({span.kind for span in redacted})
    audit.append({
        "call_id": call_id, "inference": "pii_redaction", "subject": "transcript", "role": None,
        "performed": bool(redacted),
        "basis": f"{len(redacted)} span(s) redacted" + (f": {', '.join(kinds)}" if kinds else ""),
        "model": "rules", "recorded_at": now,
    })
    return {
        "calls": to_table("calls", calls),
        "speaker_turns": to_table("speaker_turns", speaker_turns),
        "utterances": to_table("utterances", utterance_rows),
        "speaker_affect": to_table("speaker_affect", affect_rows),
        "qa_flags": to_table("qa_flags", flag_rows),
        "stage_metrics": to_table("stage_metrics", metrics),
        "audit": to_table("audit", audit),
        "conversation_metrics": to_table("conversation_metrics", [
            {"call_id": call_id, "role": role_of(m.speaker), **dataclasses.asdict(m)} for m in talk.speakers
        ]),
        "face_tracks": to_table("face_tracks", _face_track_rows(call_id, faces, role_of)),
        "face_affect": to_table("face_affect", _face_affect_rows(call_id, faces, role_of)),
    }


def _face_track_rows(call_id: str, faces: face_branch.VisionResult | None, role_of) -> list[dict]:
    if faces is None:
        return []
    detector = faces.versions.get("face_detection")
    return [
        {
            "call_id": call_id, "track_id": t.track_id, "speaker": t.speaker,
            "role": role_of(t.speaker) if t.speaker else None, "link_confidence": t.link_confidence,
            "link_evidence": t.link_evidence, "first_s": t.first_s, "last_s": t.last_s,
            "n_detections": t.n_detections, "n_usable": t.n_usable, "rejected": json.dumps(t.rejected, sort_keys=True),
            "mean_face_px": t.mean_face_px, "box_x0": t.box[0], "box_y0": t.box[1], "box_x1": t.box[2],
            "box_y1": t.box[3], "detector": detector,
        }
        for t in faces.tracks
    ]


def _face_affect_rows(call_id: str, faces: face_branch.VisionResult | None, role_of) -> list[dict]:
    if faces is None:
        return []
    speaker_of = {t.track_id: t.speaker for t in faces.tracks}
    rows = []
    for r in faces.affect:
        speaker = speaker_of.get(r.track_id)
        rows.append({
            "call_id": call_id, "track_id": r.track_id, "speaker": speaker,
            "role": role_of(speaker) if speaker else None, "start_s": r.start, "end_s": r.end, "n_frames": r.n_frames,
            **{f"p_{name}": p for name, p in zip(face_branch.EMOTIONS, r.probs)},
            "valence": r.valence, "arousal": r.arousal, "confidence": r.confidence, "model": r.model,
        })
    return rows


def to_rttm(turns: Annotation, uri: str) -> str:
    lines = [
        f"SPEAKER {uri} 1 {seg.start:.3f} {seg.duration:.3f} <NA> <NA> {label} <NA> <NA>"
        for seg, _, label in sorted(turns.itertracks(yield_label=True), key=lambda t: t[0].start)
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def _vtt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def to_webvtt(utterances: list[attribution.Utterance], role_of: dict[str, str]) -> str:
    cues = ["WEBVTT", ""]
    for u in utterances:
        role = role_of.get(u.speaker)
        voice = f"{u.speaker} ({role})" if role else u.speaker
        cues += [str(u.utterance_id + 1), f"{_vtt_time(u.start)} --> {_vtt_time(u.end)}", f"<v {voice}>{u.text}", ""]
    return "\n".join(cues)
