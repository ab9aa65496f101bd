"""Valid per-call tables with plausible values, and their curated layout, for tests.

``make_call_tables`` builds one call as analyze_call would (two speakers, an agent and a
customer, a frustrated stretch with a flag); every table conforms to pipeline.schemas and passes
the quality gate. ``curated_objects`` lays a call out as the batch commits it (Parquet per table,
manifest last), as relative keys under a curated root; ``write_local`` writes them to a directory.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
from pyannote.core import Annotation, Segment

from pipeline.manifest import CallManifest
from pipeline.records import AffectWindow, Utterance, Word
from pipeline.stages.fusion import quarter_summary
from pipeline.stages.inference_policy import CONSENT_KEY
from pipeline.schemas import SCHEMA_VERSION, TABLES, to_table
from pipeline.stages.text.conversation import conversation_metrics
from pipeline.storage.curated import manifest_key, parquet_bytes, snippet_key, table_key

AGENT, CUSTOMER = "SPEAKER_00", "SPEAKER_01"
ROLES = {AGENT: "agent", CUSTOMER: "customer"}
WINDOW_S, HOP_S = 5.0, 2.5
STAGES = ("decode", "speech_activity", "diarization", "transcription", "text_affect", "voice_affect", "fusion", "flags")

_AGENT_LINES = [
    "thank you for calling how can I help you today",
    "let me pull up your account",
    "I understand let me check that for you",
    "I can see the charge on your bill",
    "I will refund that right away",
    "is there anything else I can help with",
]
_CUSTOMER_CALM = ["hi I have a question about my bill", "sure my account number is on file", "okay thanks"]
_CUSTOMER_ANGRY = [
    "this is the third time I am calling about this",
    "I am really frustrated nobody fixes anything",
    "this is ridiculous I want it fixed now",
]


def make_call_tables(
    call_id: str = "call-001",
    call_date: str = "2024-05-01",
    duration_s: float = 90.0,
    seed: int = 0,
    frustrated: bool = True,
    video: bool = False,
) -> dict[str, pa.Table]:
    """One call's tables. The customer is frustrated from 30% to 60% of the call when asked.

    With ``video``: three face tracks, the agent's and the customer's linked, a third (an
    observer who never speaks) unlinked, and the linked faces' readings in speaker_affect."""
    rng = random.Random(seed)
    stretch = (0.3 * duration_s, 0.6 * duration_s) if frustrated else (duration_s + 1, duration_s + 1)
    processed_at = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)

    # Alternating turns, agent first, with short gaps; the last ends a second before the call does.
    turns, t, speaker = [], 0.5, AGENT
    while t < duration_s - 3.0:
        end = min(t + rng.uniform(3.0, 8.0), duration_s - 1.0)
        turn = {"call_id": call_id, "speaker": speaker, "role": ROLES[speaker], "start_s": round(t, 3), "end_s": round(end, 3)}
        turns.append(turn)
        t, speaker = end + rng.uniform(0.2, 0.8), CUSTOMER if speaker == AGENT else AGENT

    utterances = []
    for i, turn in enumerate(turns):
        angry = turn["speaker"] == CUSTOMER and turn["start_s"] < stretch[1] and turn["end_s"] > stretch[0]
        lines = _AGENT_LINES if turn["speaker"] == AGENT else _CUSTOMER_ANGRY if angry else _CUSTOMER_CALM
        text = lines[i % len(lines)]
        utterances.append(
            {
                **turn,
                "utterance_id": i,
                "text": text,
                "n_words": len(text.split()),
                "asr_confidence": round(rng.uniform(0.6, 0.99), 3),
                # The inference policy reads customers only (pipeline.stages.inference_policy).
                "text_valence": None if turn["speaker"] == AGENT else -0.7 if angry else round(rng.uniform(0.0, 0.5), 3),
            }
        )

    affect = []
    for spk in (CUSTOMER,):  # no emotion is inferred about the agent
        own = [u for u in utterances if u["speaker"] == spk]
        start = 0.0
        while start < duration_s:
            end = min(start + WINDOW_S, duration_s)
            spoken = [u for u in own if u["start_s"] < end and u["end_s"] > start]
            if spoken:
                angry = spk == CUSTOMER and start < stretch[1] and end > stretch[0]
                text_valence = sum(u["text_valence"] for u in spoken) / len(spoken)
                voice_valence = round(rng.uniform(-0.2, 0.2), 3)
                voice_arousal = round(rng.uniform(0.4, 0.8) if angry else rng.uniform(-0.4, 0.1), 3)
                affect.append(
                    {
                        "call_id": call_id,
                        "speaker": spk,
                        "role": ROLES[spk],
                        "start_s": start,
                        "end_s": end,
                        "valence": round(0.7 * text_valence + 0.3 * voice_valence, 4),
                        "arousal": voice_arousal,
                        "confidence": round(rng.uniform(0.4, 0.9), 3),
                        # Some windows have voice only (no words in them): text_valence is null.
                        "text_valence": None if rng.random() < 0.2 else round(text_valence, 4),
                        "voice_valence": voice_valence,
                        "voice_arousal": voice_arousal,
                        "modalities": "text,voice,face" if video else "text,voice",
                        "face_valence": (-0.4 if angry else 0.2) if video else None,
                        "face_arousal": (0.5 if angry else -0.1) if video else None,
                    }
                )
            start += HOP_S
    for row in affect:
        if row["text_valence"] is None:
            row["modalities"] = "voice,face" if video else "voice"
    face_tracks, face_affect = _face_rows(call_id, duration_s, stretch, rng) if video else ([], [])

    flags = []
    flagged = [a for a in affect if a["speaker"] == CUSTOMER and a["start_s"] < stretch[1] and a["end_s"] > stretch[0]]
    if flagged:
        in_stretch = [u for u in utterances if u["speaker"] == CUSTOMER and u["start_s"] < stretch[1] and u["end_s"] > stretch[0]]
        ids = [u["utterance_id"] for u in in_stretch]
        flags.append(
            {
                "call_id": call_id,
                "flag_id": f"{call_id}-f0",
                "flag_type": "customer_frustration",
                "speaker": CUSTOMER,
                "role": "customer",
                "start_s": stretch[0],
                "end_s": stretch[1],
                "score": round(rng.uniform(0.6, 0.95), 3),
                "confidence": round(sum(a["confidence"] for a in flagged) / len(flagged), 4),
                "mean_valence": round(sum(a["valence"] for a in flagged) / len(flagged), 4),
                "mean_arousal": round(sum(a["arousal"] for a in flagged) / len(flagged), 4),
                "evidence": json.dumps({"utterance_ids": ids, "cues": ["valence", "arousal"]}),
                "rule_version": "frustration-v1",
                "snippet_key": snippet_key("", call_date, call_id, f"{call_id}-f0"),
            }
        )

    speech_s = sum(t["end_s"] - t["start_s"] for t in turns)
    annotation = Annotation(uri=call_id)
    for t in turns:
        annotation[Segment(t["start_s"], t["end_s"])] = t["speaker"]
    spoken = [
        Utterance(u["utterance_id"], u["speaker"], u["start_s"], u["end_s"],
                  tuple(Word(u["start_s"], u["end_s"], w, 1.0) for w in u["text"].split()))
        for u in utterances
    ]
    talk = conversation_metrics(annotation, spoken, duration_s)
    calls = [
        {
            "call_id": call_id,
            "call_date": date.fromisoformat(call_date),
            "source_uri": f"s3://callaffect-raw/recordings/{call_date}/{call_id}.wav",
            "sha256": f"{seed:064x}",
            "duration_s": duration_s,
            "source_sample_rate": 8000,
            "source_channels": 1,
            "has_video": video,
            "speech_s": round(speech_s, 3),
            "num_speakers": 2,
            "language": "en",
            "processed_at": processed_at,
            "pipeline_version": "0.1.0",
            "settings_fingerprint": "0123456789ab",
            "non_talk_s": talk.non_talk_s,
            "overlap_s": talk.overlap_s,
            "channel_layout": "mono",
            "agent_id": f"agent-{seed % 3}",
            "queue": "billing",
        }
    ]
    stage_metrics = [
        {
            "call_id": call_id,
            "stage": stage,
            "seconds": round(duration_s * rtf, 4),
            "real_time_factor": rtf,
            "device": "cpu",
            "backend": "embedded",
            "model_version": "test",
        }
        for stage, rtf in ((s, round(rng.uniform(0.005, 0.08), 4)) for s in STAGES)
    ]
    audit = [
        {
            "call_id": call_id,
            "inference": inference,
            "subject": spk,
            "role": ROLES[spk],
            "performed": spk == CUSTOMER,
            "basis": "customer, consent" if spk == CUSTOMER else "no emotion inference about agents",
            "model": "test" if spk == CUSTOMER else None,
            "recorded_at": processed_at,
            "policy_rule": "customer-consent" if spk == CUSTOMER else "agent-no-affect",
            "consent": f"consent.{CONSENT_KEY[inference]}=true" if spk == CUSTOMER else None,
        }
        for spk in (AGENT, CUSTOMER)
        for inference in ("text_valence", "voice_arousal") + (("face_expression",) if video else ())
    ]
    rows = {
        "calls": calls,
        "speaker_turns": turns,
        "utterances": utterances,
        "speaker_affect": affect,
        "qa_flags": flags,
        "stage_metrics": stage_metrics,
        "audit": audit,
        "conversation_metrics": [
            {"call_id": call_id, "role": ROLES[m.speaker], **dataclasses.asdict(m)} for m in talk.speakers
        ],
        "face_tracks": face_tracks,
        "face_affect": face_affect,
        "coaching_affect": [],
        "speaker_affect_quarters": [],
    }
    tables = {name: to_table(name, rows[name]) for name in TABLES}
    tables["speaker_affect_quarters"] = affect_quarters(tables)
    return tables


def affect_quarters(tables: dict[str, pa.Table]) -> pa.Table:
    """speaker_affect_quarters as the analysis writes it, from the call's speaker_affect."""
    [call] = tables["calls"].to_pylist()
    rows = tables["speaker_affect"].to_pylist()
    windows = [
        AffectWindow(r["speaker"], r["start_s"], r["end_s"], r["valence"], r["arousal"], r["confidence"],
                     r["text_valence"], r["voice_valence"], r["voice_arousal"], tuple(r["modalities"].split(",")))
        for r in rows
    ]
    role = {r["speaker"]: r["role"] for r in rows}
    return to_table("speaker_affect_quarters", [
        {"call_id": call["call_id"], "speaker": q.speaker, "role": role[q.speaker], "quarter": q.quarter,
         "windows": q.windows, "weight_s": q.weight_s, "valence": q.valence, "arousal": q.arousal}
        for q in quarter_summary(windows, call["duration_s"])
    ])


_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _face_rows(call_id: str, duration_s: float, stretch: tuple[float, float], rng: random.Random) -> tuple[list, list]:
    """Gallery of three tiles: agent (left), customer (middle), a silent observer (right)."""
    tiles = ((0, AGENT), (1, CUSTOMER), (2, None))
    tracks = [
        {
            "call_id": call_id, "track_id": track, "speaker": speaker, "role": ROLES.get(speaker),
            "link_confidence": round(rng.uniform(0.6, 0.95), 3) if speaker else 0.0,
            "link_evidence": "lip motion vs speech" if speaker else "no speaker's speech matches its lip motion",
            "first_s": 0.0, "last_s": round(duration_s - 0.2, 3), "n_detections": int(duration_s * 5),
            "n_usable": int(duration_s * 5) - 3, "rejected": json.dumps({"blurred": 3}), "mean_face_px": 80.0,
            "box_x0": round(0.05 + track / 3, 4), "box_y0": 0.25, "box_x1": round(0.25 + track / 3, 4), "box_y1": 0.7,
            "detector": "mtcnn-test",
        }
        for track, speaker in tiles
    ]
    affect = []
    for track, speaker in tiles:
        if speaker != CUSTOMER:  # the agent's and unlinked faces are never read
            continue
        for start in range(0, int(duration_s // WINDOW_S)):
            t0 = start * WINDOW_S
            angry = speaker == CUSTOMER and t0 < stretch[1] and t0 + WINDOW_S > stretch[0]
            weights = [rng.uniform(0.01, 0.1) for _ in _EMOTIONS]
            weights[0 if angry else 6] += 1.0
            total = sum(weights)
            affect.append({
                "call_id": call_id, "track_id": track, "speaker": speaker, "role": ROLES.get(speaker),
                "start_s": t0, "end_s": t0 + WINDOW_S, "n_frames": 25,
                **{f"p_{e}": round(w / total, 5) for e, w in zip(_EMOTIONS, weights)},
                "valence": -0.5 if angry else 0.0, "arousal": 0.6 if angry else -0.2,
                "confidence": round(rng.uniform(0.3, 0.8), 3), "model": "mini-xception-test",
            })
    return tracks, affect


def set_values(table: pa.Table, column: str, values: dict[int, object]) -> pa.Table:
    """A copy of ``table`` with ``column`` changed at the given row indexes (to make violations)."""
    data = table.column(column).to_pylist()
    for i, v in values.items():
        data[i] = v
    idx = table.column_names.index(column)
    return table.set_column(idx, table.schema.field(idx), pa.array(data, type=table.schema.field(idx).type))


def curated_objects(
    tables: dict[str, pa.Table] | None,
    call_id: str,
    call_date: str,
    status: str = "ok",
    reason: str | None = None,
    quality: dict | None = None,
) -> dict[str, bytes]:
    """Relative key -> bytes for one committed call, in write order: tables first, manifest last."""
    tables = tables or {}
    manifest = CallManifest(
        call_id=call_id,
        status=status,
        reason=reason,
        call_date=call_date,
        duration_s=tables["calls"].column("duration_s")[0].as_py() if "calls" in tables else None,
        schema_version=SCHEMA_VERSION,
        quality=quality,
        created_at="2024-06-01T12:00:00+00:00",
    )
    objects = {}
    for name, table in tables.items():
        key = table_key("", name, call_date, call_id)
        objects[key] = parquet_bytes(table)
        manifest.tables[name] = table.num_rows
        manifest.table_keys[name] = key
    objects[manifest_key("", call_date, call_id)] = manifest.to_json().encode()
    return objects


def write_local(root: str | Path, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        path = Path(root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
