"""Output tables: one pyarrow schema each, versioned together.

These are the contract between the per-call analysis, the curated Parquet on S3 and the DuckDB
marts. Add columns at the end and bump SCHEMA_VERSION; never change a column's meaning.
Times are seconds from the start of the recording. Affect values are in [-1, 1] and every one
comes with a confidence in [0, 1]: they are estimates, not verdicts.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "6"
# 2: conversation_metrics; calls.non_talk_s, calls.overlap_s, calls.channel_layout
# 3: face_tracks, face_affect; speaker_affect.face_valence, speaker_affect.face_arousal
# 4: calls.agent_id, calls.queue; qa_flags.snippet_key
# 5: audit.policy_rule, audit.consent; coaching_affect (agents' own affect, never in lead-facing marts)
# 6: speaker_affect_quarters (the windows summed per call quarter: trends outlive the windows)

CALLS = pa.schema(
    [
        ("call_id", pa.string()),
        ("call_date", pa.date32()),
        ("source_uri", pa.string()),
        ("sha256", pa.string()),
        ("duration_s", pa.float64()),
        ("source_sample_rate", pa.int32()),
        ("source_channels", pa.int32()),
        ("has_video", pa.bool_()),
        ("speech_s", pa.float64()),
        ("num_speakers", pa.int32()),
        ("language", pa.string()),
        ("processed_at", pa.timestamp("us", tz="UTC")),
        ("pipeline_version", pa.string()),
        ("settings_fingerprint", pa.string()),
        ("non_talk_s", pa.float64()),  # nobody speaking (Contact Lens "non-talk time")
        ("overlap_s", pa.float64()),  # two or more speaking at once
        ("channel_layout", pa.string()),  # "mono" or "stereo" (one party per channel)
        ("agent_id", pa.string()),  # from the call's metadata; null when not given
        ("queue", pa.string()),
    ]
)

SPEAKER_TURNS = pa.schema(
    [
        ("call_id", pa.string()),
        ("speaker", pa.string()),
        ("role", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
    ]
)

UTTERANCES = pa.schema(
    [
        ("call_id", pa.string()),
        ("utterance_id", pa.int32()),
        ("speaker", pa.string()),
        ("role", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.string()),
        ("n_words", pa.int32()),
        ("asr_confidence", pa.float64()),
        ("text_valence", pa.float64()),
    ]
)

SPEAKER_AFFECT = pa.schema(
    [
        ("call_id", pa.string()),
        ("speaker", pa.string()),
        ("role", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("valence", pa.float64()),
        ("arousal", pa.float64()),
        ("confidence", pa.float64()),
        ("text_valence", pa.float64()),
        ("voice_valence", pa.float64()),
        ("voice_arousal", pa.float64()),
        ("modalities", pa.string()),  # comma-separated, e.g. "text,voice,face"
        ("face_valence", pa.float64()),  # from the speaker's linked face track(s), when any
        ("face_arousal", pa.float64()),
    ]
)

# speaker_affect summed per speaker and quarter of the call (by window midpoint), weighted by
# confidence x window length: retention deletes the windows after a year and keeps this for as long
# as the call's other aggregates, so mart_daily_trends and mart_call_quarters do not lose their affect.
SPEAKER_AFFECT_QUARTERS = pa.schema(
    [
        ("call_id", pa.string()),
        ("speaker", pa.string()),
        ("role", pa.string()),
        ("quarter", pa.int32()),  # 1..4
        ("windows", pa.int32()),
        ("weight_s", pa.float64()),  # sum of confidence x window length
        ("valence", pa.float64()),  # weighted means; null when weight_s is 0
        ("arousal", pa.float64()),
    ]
)

# One row per face track: a summary only. Never crops, landmarks over time or embeddings, so
# nothing here can identify a person; the box is the track's mean position as a share of the frame.
FACE_TRACKS = pa.schema(
    [
        ("call_id", pa.string()),
        ("track_id", pa.int32()),
        ("speaker", pa.string()),  # linked diarized speaker; null when the evidence was too weak
        ("role", pa.string()),
        ("link_confidence", pa.float64()),
        ("link_evidence", pa.string()),
        ("first_s", pa.float64()),
        ("last_s", pa.float64()),
        ("n_detections", pa.int32()),
        ("n_usable", pa.int32()),  # passed the quality gate
        ("rejected", pa.string()),  # JSON: quality-gate reason -> count
        ("mean_face_px", pa.float64()),
        ("box_x0", pa.float64()),  # mean box, as a share of frame width / height
        ("box_y0", pa.float64()),
        ("box_x1", pa.float64()),
        ("box_y1", pa.float64()),
        ("detector", pa.string()),
    ]
)

# Facial expression per track and window: class probabilities, and the valence/arousal they map to.
FACE_AFFECT = pa.schema(
    [
        ("call_id", pa.string()),
        ("track_id", pa.int32()),
        ("speaker", pa.string()),
        ("role", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("n_frames", pa.int32()),  # usable face frames (light model) or clips (heavy model)
        ("p_angry", pa.float64()),
        ("p_disgust", pa.float64()),
        ("p_fear", pa.float64()),
        ("p_happy", pa.float64()),
        ("p_sad", pa.float64()),
        ("p_surprise", pa.float64()),
        ("p_neutral", pa.float64()),
        ("valence", pa.float64()),
        ("arousal", pa.float64()),
        ("confidence", pa.float64()),
        ("model", pa.string()),
    ]
)

QA_FLAGS = pa.schema(
    [
        ("call_id", pa.string()),
        ("flag_id", pa.string()),
        ("flag_type", pa.string()),
        ("speaker", pa.string()),
        ("role", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("score", pa.float64()),  # probability-like strength of the evidence, not a verdict
        ("confidence", pa.float64()),
        ("mean_valence", pa.float64()),
        ("mean_arousal", pa.float64()),
        ("evidence", pa.string()),  # JSON: utterance ids and the cues that fired
        ("rule_version", pa.string()),
        # The flag's review audio under the curated root; null when none was made (consent, settings).
        ("snippet_key", pa.string()),
    ]
)

STAGE_METRICS = pa.schema(
    [
        ("call_id", pa.string()),
        ("stage", pa.string()),
        ("seconds", pa.float64()),
        ("real_time_factor", pa.float64()),
        ("device", pa.string()),
        ("backend", pa.string()),
        ("model_version", pa.string()),
    ]
)

AUDIT = pa.schema(
    [
        ("call_id", pa.string()),
        ("inference", pa.string()),  # what was inferred, e.g. "text_valence"
        ("subject", pa.string()),  # on whom: speaker label (never a person's identity)
        ("role", pa.string()),
        ("performed", pa.bool_()),
        ("basis", pa.string()),  # the consent or policy that allowed or stopped it
        ("model", pa.string()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("policy_rule", pa.string()),  # the inference policy's rule that decided, e.g. "agent-no-affect"
        ("consent", pa.string()),  # the consent it read, e.g. "consent.voice_affect=true"; null if none applies
    ]
)

CONVERSATION_METRICS = pa.schema(
    [
        ("call_id", pa.string()),
        ("speaker", pa.string()),
        ("role", pa.string()),
        ("talk_s", pa.float64()),
        ("talk_share", pa.float64()),  # of all talk time in the call
        ("n_turns", pa.int32()),
        ("n_words", pa.int32()),
        ("words_per_minute", pa.float64()),  # over this speaker's talk time; null with no words
        ("interruptions_made", pa.int32()),  # started speaking while another was mid-turn
        ("interruptions_received", pa.int32()),
        ("longest_monologue_s", pa.float64()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "calls": CALLS,
    "speaker_turns": SPEAKER_TURNS,
    "utterances": UTTERANCES,
    "speaker_affect": SPEAKER_AFFECT,
    "speaker_affect_quarters": SPEAKER_AFFECT_QUARTERS,
    "qa_flags": QA_FLAGS,
    "stage_metrics": STAGE_METRICS,
    "audit": AUDIT,
    "conversation_metrics": CONVERSATION_METRICS,
    "face_tracks": FACE_TRACKS,
    "face_affect": FACE_AFFECT,
    # An agent's own affect, made only where the policy allows coaching (with the agent's consent):
    # the marts never load it, so it never reaches leads' marts, reports or the review app.
    "coaching_affect": SPEAKER_AFFECT,
}


def to_table(name: str, rows: list[dict]) -> pa.Table:
    """Build a table from row dicts, checking every column of the schema is given."""
    schema = TABLES[name]
    columns = {f.name: [row[f.name] for row in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)
