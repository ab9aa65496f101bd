"""The row builders' share of issue 10: agent_id and queue from the metadata contract into the calls
row, each flag's snippet key, and an audit row per review snippet made or withheld."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipeline import metadata as call_metadata
from pipeline.call.snippets import review_snippets
from pipeline.call.tables import CallAnalysis, build_tables
from pipeline.manifest import CallManifest
from pipeline.records import ChannelLayout, Flag, RedactedSpan, RoleAssignment, Utterance
from pipeline.schemas import TABLES
from pipeline.settings import PolicySettings, SnippetSettings
from pipeline.stages.inference_policy import decide
from pipeline.stages.text.conversation import conversation_metrics
from pipeline.storage.media import MediaInfo

from record_factories import turns_from_spans, words_from_text

SR = 16000
FLAGS = [
    Flag("c1:SPEAKER_01:12.0", "SPEAKER_01", 12.0, 20.0, 0.8, 0.7, -0.5, 0.4, "{}"),
    Flag("c1:SPEAKER_01:31.0", "SPEAKER_01", 31.0, 38.0, 0.6, 0.5, -0.4, 0.3, "{}"),
]


def _analysis(metadata: dict) -> CallAnalysis:
    """A 40 s two-party call with two customer flags and one redacted span, analysed up to the
    tables under ``metadata`` (validated by the contract, as analyze_call does)."""
    meta = call_metadata.validate(metadata)
    turns = turns_from_spans(("SPEAKER_00", 0.5, 10.0), ("SPEAKER_01", 10.5, 39.0))
    utterances = [Utterance(0, "SPEAKER_00", 0.5, 2.0, tuple(words_from_text("how can I help", 0.5))),
                  Utterance(1, "SPEAKER_01", 10.5, 12.0, tuple(words_from_text("this is the third time", 10.5)))]
    redacted = [RedactedSpan(1, "phone", 14.0, 15.5)]
    roles = RoleAssignment({"SPEAKER_00": "agent", "SPEAKER_01": "customer"}, 0.9, "cues")
    samples = (0.1 * np.sin(2 * np.pi * 200 * np.arange(40 * SR) / SR)).astype(np.float32)
    return CallAnalysis(
        call_id="c1", call_date="2024-05-01", manifest=CallManifest("c1", source_uri="s3://raw/c1.wav"),
        media=MediaInfo("c1.wav", 1, "ab" * 32, "wav", True, False, 8000, 1, 40.0), duration_s=40.0, speech_s=38.0,
        layout=ChannelLayout("mono", "one channel"), turns=turns, utterances=utterances, redacted=redacted,
        roles=roles, talk=conversation_metrics(turns, utterances, 40.0),
        policy=decide(roles, meta, PolicySettings()), text_scores=[], affect=[],
        flags=FLAGS, faces=None, face_basis="no video stream", stage_seconds={}, stage_info={},
        versions={"text_affect": "vader", "voice_affect": "egemaps", "flags": "frustration-v1"},
        processed_at=dt.datetime(2024, 5, 1, 3, tzinfo=dt.timezone.utc),
        snippets=review_snippets(samples, SR, FLAGS, redacted, meta.consent, SnippetSettings(pad_s=2.0)),
        agent_id=meta.agent_id, queue=meta.queue,
    )


def test_agent_and_queue_from_the_metadata_reach_the_calls_row():
    tables = build_tables(_analysis({"agent_id": "agent.smith@acme", "queue": "billing-2"}))
    assert {name: t.schema for name, t in tables.items()} == TABLES
    [row] = tables["calls"].to_pylist()
    assert (row["agent_id"], row["queue"]) == ("agent.smith@acme", "billing-2")
    [row] = build_tables(_analysis({}))["calls"].to_pylist()
    assert (row["agent_id"], row["queue"]) == (None, None)


@pytest.mark.parametrize("field, value, why", [
    ("agent_id", "../admin", "should match pattern"),
    ("agent_id", "a" * 129, "should match pattern"),
    ("queue", "billing queue", "should match pattern"),
    ("queue", "", "should match pattern"),
    ("queue", 7, "valid string"),
])
def test_an_unsafe_agent_or_queue_is_refused_naming_the_field(field, value, why):
    with pytest.raises(call_metadata.MetadataError, match=f"^metadata {field}: .*{why}"):
        call_metadata.validate({field: value})


def test_each_flag_has_its_snippet_key_and_an_audit_row():
    tables = build_tables(_analysis({}))
    keys = {f["flag_id"]: f["snippet_key"] for f in tables["qa_flags"].to_pylist()}
    assert keys == {
        "c1:SPEAKER_01:12.0": "snippets/date=2024-05-01/call_id=c1/c1:SPEAKER_01:12.0.ogg",
        "c1:SPEAKER_01:31.0": "snippets/date=2024-05-01/call_id=c1/c1:SPEAKER_01:31.0.ogg",
    }
    audit = {a["subject"]: a for a in tables["audit"].to_pylist() if a["inference"] == "review_snippet"}
    assert set(audit) == set(keys)
    first, second = audit["c1:SPEAKER_01:12.0"], audit["c1:SPEAKER_01:31.0"]
    assert first["performed"] and first["model"] == "libopus" and first["role"] == "customer"
    assert first["basis"] == "consent.voice_affect=true; 1 redacted span(s) silenced"  # 10-22 s holds 13.5-16 s
    assert second["basis"] == "consent.voice_affect=true; 0 redacted span(s) silenced"


def test_without_voice_consent_no_snippet_key_and_the_audit_says_why():
    tables = build_tables(_analysis({"consent": {"voice_affect": False}}))
    assert [f["snippet_key"] for f in tables["qa_flags"].to_pylist()] == [None, None]
    audit = [a for a in tables["audit"].to_pylist() if a["inference"] == "review_snippet"]
    assert [(a["subject"], a["performed"], a["basis"], a["model"]) for a in audit] == [
        ("c1:SPEAKER_01:12.0", False, "consent.voice_affect=false", None),
        ("c1:SPEAKER_01:31.0", False, "consent.voice_affect=false", None),
    ]
