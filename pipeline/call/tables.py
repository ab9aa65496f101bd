"""One call's tables: a ``CallAnalysis`` in, one row builder per table, Arrow tables out.

Each builder reads only the analysis; the schemas are ``pipeline.schemas``. Rows carry the
speaker's role so analysts never join to find out whose affect a row is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from pyannote.core import Annotation

from pipeline.manifest import CallManifest
from pipeline.records import (
    AffectWindow,
    CallMetrics,
    ChannelLayout,
    FaceBranchResult,
    Flag,
    InferencePolicy,
    RedactedSpan,
    RoleAssignment,
    TextValence,
    Utterance,
)
from pipeline.call.snippets import ENCODER, ReviewSnippets
from pipeline.schemas import to_table
from pipeline.stages import flags, fusion
from pipeline.stages.contract import StageInfo
from pipeline.stages.vision.face_branch import EMOTIONS
from pipeline.storage.curated import snippet_key
from pipeline.storage.media import MediaInfo


@dataclass(frozen=True)
class CallAnalysis:
    """Everything one analysed call's tables are built from."""

    call_id: str
    call_date: str
    manifest: CallManifest  # source, pipeline version and settings fingerprint
    media: MediaInfo
    duration_s: float
    speech_s: float
    layout: ChannelLayout
    turns: Annotation
    utterances: list[Utterance]
    redacted: list[RedactedSpan]
    roles: RoleAssignment
    talk: CallMetrics
    policy: InferencePolicy  # whose emotions may be read, per modality, and why
    text_scores: list[TextValence]
    affect: list[AffectWindow]
    flags: list[Flag]
    faces: FaceBranchResult | None  # None when the face branch did not run
    face_basis: str  # why the face branch ran or not (consent, settings, no video)
    stage_seconds: dict[str, float]
    stage_info: dict[str, StageInfo]
    versions: dict[str, str]
    processed_at: dt.datetime
    snippets: ReviewSnippets
    agent_id: str | None  # from the call's metadata
    queue: str | None

    def role_of(self, speaker: str | None, default: str | None = None) -> str | None:
        return self.roles.roles.get(speaker, default) if speaker else default


def call_rows(a: CallAnalysis) -> list[dict]:
    return [{
        "call_id": a.call_id,
        "call_date": dt.date.fromisoformat(a.call_date),
        "source_uri": a.manifest.source_uri,
        "sha256": a.media.sha256,
        "duration_s": round(a.duration_s, 3),
        "source_sample_rate": a.media.source_sample_rate,
        "source_channels": a.media.source_channels,
        "has_video": a.media.has_video,
        "speech_s": round(a.speech_s, 3),
        "num_speakers": len(a.turns.labels()),
        "language": "en",
        "processed_at": a.processed_at,
        "pipeline_version": a.manifest.pipeline_version,
        "settings_fingerprint": a.manifest.settings_fingerprint,
        "non_talk_s": a.talk.non_talk_s,
        "overlap_s": a.talk.overlap_s,
        "channel_layout": a.layout.kind,
        "agent_id": a.agent_id,
        "queue": a.queue,
    }]


def speaker_turn_rows(a: CallAnalysis) -> list[dict]:
    return [
        {"call_id": a.call_id, "speaker": label, "role": a.role_of(label), "start_s": round(seg.start, 3), "end_s": round(seg.end, 3)}
        for seg, _, label in sorted(a.turns.itertracks(yield_label=True), key=lambda t: (t[0].start, t[2]))
    ]


def utterance_rows(a: CallAnalysis) -> list[dict]:
    # Only readings meant for the quality marts: a coaching reading stays in coaching_affect.
    shown = a.policy.speakers("text_valence", audience="quality")
    text_by_id = {t.utterance_id: t.valence for t in a.text_scores}
    return [
        {
            "call_id": a.call_id, "utterance_id": u.utterance_id, "speaker": u.speaker,
            "role": a.role_of(u.speaker, "other"), "start_s": round(u.start, 3), "end_s": round(u.end, 3),
            "text": u.text, "n_words": len(u.words), "asr_confidence": round(u.asr_confidence, 4),
            "text_valence": text_by_id.get(u.utterance_id) if u.speaker in shown else None,
        }
        for u in a.utterances
    ]


def speaker_affect_rows(a: CallAnalysis, audience: str = "quality") -> list[dict]:
    """Fused windows of the speakers whose readings go to ``audience``: the quality marts
    (customers), or an agent's own coaching table."""
    speakers = a.policy.speakers(audience=audience)
    return [
        {
            "call_id": a.call_id, "speaker": w.speaker, "role": a.role_of(w.speaker), "start_s": w.start, "end_s": w.end,
            "valence": w.valence, "arousal": w.arousal, "confidence": w.confidence, "text_valence": w.text_valence,
            "voice_valence": w.voice_valence, "voice_arousal": w.voice_arousal, "modalities": ",".join(w.modalities),
            "face_valence": w.face_valence, "face_arousal": w.face_arousal,
        }
        for w in a.affect if w.speaker in speakers
    ]


def speaker_affect_quarter_rows(a: CallAnalysis) -> list[dict]:
    """The quality marts' windows (customers') summed per quarter of the call."""
    speakers = a.policy.speakers(audience="quality")
    windows = [w for w in a.affect if w.speaker in speakers]
    return [
        {"call_id": a.call_id, "speaker": q.speaker, "role": a.role_of(q.speaker), "quarter": q.quarter,
         "windows": q.windows, "weight_s": q.weight_s, "valence": q.valence, "arousal": q.arousal}
        # The rounded duration is the one dim_calls holds, which the marts' fallback divides by.
        for q in fusion.quarter_summary(windows, round(a.duration_s, 3))
    ]


def coaching_affect_rows(a: CallAnalysis) -> list[dict]:
    return speaker_affect_rows(a, audience="coaching")


def qa_flag_rows(a: CallAnalysis) -> list[dict]:
    return [
        {
            "call_id": a.call_id, "flag_id": f.flag_id, "flag_type": flags.FLAG_TYPE, "speaker": f.speaker,
            "role": a.role_of(f.speaker), "start_s": round(f.start, 3), "end_s": round(f.end, 3), "score": f.score,
            "confidence": f.confidence, "mean_valence": f.mean_valence, "mean_arousal": f.mean_arousal,
            "evidence": f.evidence, "rule_version": a.versions["flags"],
            "snippet_key": snippet_key("", a.call_date, a.call_id, f.flag_id) if f.flag_id in a.snippets.audio else None,
        }
        for f in a.flags
    ]


def stage_metric_rows(a: CallAnalysis) -> list[dict]:
    duration = max(a.duration_s, 1e-6)
    unknown = StageInfo("python", None, "cpu")
    rows = []
    for stage, secs in a.stage_seconds.items():
        info = a.stage_info.get(stage, unknown)
        rows.append({
            "call_id": a.call_id, "stage": stage, "seconds": secs, "real_time_factor": round(secs / duration, 5),
            "device": info.device, "backend": info.backend, "model_version": a.versions.get(info.model_key or ""),
        })
    return rows


def audit_rows(a: CallAnalysis) -> list[dict]:
    """Every inference performed or withheld, with the policy rule and consent that decided it:
    per speaker and modality, per unlinked face track, the transcript's redaction and each flag's
    review snippet."""
    linked = {t.speaker: t for t in sorted(a.faces.tracks, key=lambda t: -t.link_confidence) if t.speaker is not None} if a.faces else {}
    models = {"text_valence": a.versions.get("text_affect"), "voice_arousal": a.versions.get("voice_affect"),
              "face_expression": a.versions.get("face_expression")}

    def outcome(d) -> tuple[bool, str]:
        if not d.allowed or d.inference != "face_expression":
            return d.allowed, d.reason
        if a.faces is None:
            return False, f"{d.reason}; {a.face_basis}"
        track = linked.get(d.speaker)
        if track is None:
            return False, f"{d.reason}; {a.face_basis}; no face track linked to this speaker"
        return True, f"{d.reason}; {a.face_basis}; face track {track.track_id} linked (confidence {track.link_confidence:.2f})"

    rows = []
    for d in a.policy.decisions:
        performed, basis = outcome(d)
        rows.append(_audit(a, d.inference, d.speaker, d.role, performed, basis, models[d.inference] if performed else None,
                           d.rule, d.consent))
    # A face nobody could link may be the agent's: it is never read, and the audit says so per track.
    rows += [
        _audit(a, "face_expression", f"face_track:{t.track_id}", None, False,
               f"{a.face_basis}; track not linked to a speaker, may be the agent: not read", None, "face-unlinked", None)
        for t in (a.faces.tracks if a.faces else []) if t.speaker is None
    ]
    kinds = sorted({span.kind for span in a.redacted})
    rows.append(_audit(a, "pii_redaction", "transcript", None, bool(a.redacted),
                       f"{len(a.redacted)} span(s) redacted" + (f": {', '.join(kinds)}" if kinds else ""), "rules",
                       "redaction", None))
    for f in a.flags:
        voice = a.policy.decision(f.speaker, "voice_arousal")
        made = f.flag_id in a.snippets.audio
        rows.append(_audit(a, "review_snippet", f.flag_id, a.role_of(f.speaker), made, a.snippets.basis[f.flag_id],
                           ENCODER if made else None, "review-snippet", voice.consent if voice else None))
    return rows


def _audit(a: CallAnalysis, inference: str, subject: str, role: str | None, performed: bool, basis: str,
           model: str | None, rule: str, consent: str | None) -> dict:
    return {
        "call_id": a.call_id, "inference": inference, "subject": subject, "role": role, "performed": performed,
        "basis": basis, "model": model, "recorded_at": a.processed_at, "policy_rule": rule, "consent": consent,
    }


def conversation_metric_rows(a: CallAnalysis) -> list[dict]:
    return [{"call_id": a.call_id, "role": a.role_of(m.speaker), **dataclasses.asdict(m)} for m in a.talk.speakers]


def face_track_rows(a: CallAnalysis) -> list[dict]:
    if a.faces is None:
        return []
    detector = a.faces.versions.get("face_detection")
    return [
        {
            "call_id": a.call_id, "track_id": t.track_id, "speaker": t.speaker, "role": a.role_of(t.speaker),
            "link_confidence": t.link_confidence, "link_evidence": t.link_evidence, "first_s": t.first_s,
            "last_s": t.last_s, "n_detections": t.n_detections, "n_usable": t.n_usable,
            "rejected": json.dumps(t.rejected, sort_keys=True), "mean_face_px": t.mean_face_px,
            "box_x0": t.box[0], "box_y0": t.box[1], "box_x1": t.box[2], "box_y1": t.box[3], "detector": detector,
        }
        for t in a.faces.tracks
    ]


def face_affect_rows(a: CallAnalysis) -> list[dict]:
    if a.faces is None:
        return []
    speaker_of = {t.track_id: t.speaker for t in a.faces.tracks}
    rows = []
    for r in a.faces.affect:
        speaker = speaker_of.get(r.track_id)
        rows.append({
            "call_id": a.call_id, "track_id": r.track_id, "speaker": speaker, "role": a.role_of(speaker),
            "start_s": r.start, "end_s": r.end, "n_frames": r.n_frames,
            **{f"p_{name}": p for name, p in zip(EMOTIONS, r.probs)},
            "valence": r.valence, "arousal": r.arousal, "confidence": r.confidence, "model": r.model,
        })
    return rows


ROW_BUILDERS: dict[str, Callable[[CallAnalysis], list[dict]]] = {
    "calls": call_rows,
    "speaker_turns": speaker_turn_rows,
    "utterances": utterance_rows,
    "speaker_affect": speaker_affect_rows,
    "speaker_affect_quarters": speaker_affect_quarter_rows,
    "qa_flags": qa_flag_rows,
    "stage_metrics": stage_metric_rows,
    "audit": audit_rows,
    "conversation_metrics": conversation_metric_rows,
    "face_tracks": face_track_rows,
    "face_affect": face_affect_rows,
    "coaching_affect": coaching_affect_rows,
}


def build_tables(a: CallAnalysis) -> dict[str, pa.Table]:
    return {name: to_table(name, rows(a)) for name, rows in ROW_BUILDERS.items()}
