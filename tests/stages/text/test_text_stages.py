"""Transcript stages: words to speakers and utterances, roles, text valence, conversation metrics."""

from __future__ import annotations

import pytest

from pipeline.stages.text import attribution, roles
from pipeline.stages.text.attribution import build_utterances
from pipeline.stages.text.text_affect import score_utterances
from pipeline.records import Utterance, Word

from record_factories import turns_from_spans as _turns, words_from_text as _words


def test_words_go_to_overlapping_speaker_and_split_into_utterances():
    turns = _turns(("A", 0.0, 2.0), ("B", 2.2, 4.0))
    words = _words("hello there friend", 0.1) + _words("hi back again ok", 2.3) + [Word(4.1, 4.3, " late", 0.8)]
    utts = build_utterances(words, turns)
    assert [(u.speaker, u.text) for u in utts] == [("A", "hello there friend"), ("B", "hi back again ok late")]
    assert utts[1].start == pytest.approx(2.3) and utts[1].end == pytest.approx(4.3)
    assert utts[0].asr_confidence == pytest.approx(0.9)


def test_long_pause_splits_and_far_words_are_unknown():
    turns = _turns(("A", 0.0, 10.0))
    utts = build_utterances(_words("one two", 0.0) + _words("three", 5.0), turns)
    assert [u.text for u in utts] == ["one two", "three"]
    assert attribution.speaker_of(Word(20.0, 20.2, "x", 1.0), turns) == attribution.UNKNOWN_SPEAKER


def test_turn_index_matches_annotation_overlap():
    turns = _turns(("A", 0.0, 2.0), ("B", 1.5, 4.0), ("A", 6.0, 7.0))
    index = attribution.TurnIndex(turns)
    assert index.speaker_of(Word(1.4, 1.9, "x", 1.0)) == "A"  # 0.5 s with A, 0.4 s with B
    assert index.speaker_of(Word(1.6, 2.4, "x", 1.0)) == "B"
    assert index.speaker_of(Word(4.5, 4.8, "x", 1.0)) == "B"  # nearest turn, 0.5 s away
    assert index.speaker_of(Word(5.2, 5.3, "x", 1.0)) == "A"
    assert index.speaker_of(Word(9.0, 9.2, "x", 1.0)) == attribution.UNKNOWN_SPEAKER


def test_roles_from_cues_and_metadata_override():
    turns = _turns(("S0", 0.0, 3.0), ("S1", 3.5, 6.0), ("S0", 6.5, 8.0))
    utts = [
        Utterance(0, "S1", 0.0, 1.0, tuple(_words("hello I have a problem", 0.0))),
        Utterance(1, "S0", 1.0, 3.0, tuple(_words("thank you for calling my name is Ann how can I help", 1.0))),
    ]
    assigned = roles.assign_roles(turns, utts)
    assert assigned.roles == {"S0": "agent", "S1": "customer"} and assigned.agent_confidence > 0.5
    forced = roles.assign_roles(turns, utts, given_roles={"S0": "customer", "S1": "agent"})
    assert forced.roles == {"S0": "customer", "S1": "agent"} and forced.source == "metadata"


def test_vader_reads_negative_and_positive_text():
    good, bad = score_utterances([
        Utterance(0, "A", 0, 1, tuple(_words("thank you so much that is great help", 0))),
        Utterance(1, "B", 0, 1, tuple(_words("this is ridiculous I am furious terrible service", 0))),
    ])
    assert good.valence > 0.5 and bad.valence < -0.5
    assert 0 < bad.confidence <= 1


def test_conversation_metrics_talk_share_interruptions_and_pace():
    from pipeline.stages.text.conversation import conversation_metrics

    # A talks 0-10, B interrupts at 8 (A goes on 2 s), B until 14; 14-16 nobody; A 16-20; B says "ok" at 19.8.
    turns = _turns(("A", 0.0, 10.0), ("B", 8.0, 14.0), ("A", 16.0, 20.0), ("B", 19.8, 20.0))
    utts = [Utterance(0, "A", 0.0, 10.0, tuple(_words("one two three four five six seven eight nine ten", 0.0, step=1.0))),
            Utterance(1, "B", 8.0, 14.0, tuple(_words("a b c", 8.0, step=1.0)))]
    m = conversation_metrics(turns, utts, duration_s=25.0)
    by = {s.speaker: s for s in m.speakers}
    assert m.non_talk_s == pytest.approx(2.0 + 5.0)  # 14-16 and 20-25
    assert m.overlap_s == pytest.approx(2.0 + 0.2)
    assert by["A"].talk_s == pytest.approx(14.0) and by["B"].talk_s == pytest.approx(6.2)
    assert by["A"].talk_share + by["B"].talk_share == pytest.approx(1.0, abs=1e-3)
    # B's start at 8 s interrupts (A goes on 2 s); B's "ok" at 19.8 s does not (A ends 0.2 s later).
    assert (by["B"].interruptions_made, by["A"].interruptions_received) == (1, 1)
    assert by["A"].interruptions_made == 0 and by["B"].interruptions_received == 0
    assert by["A"].words_per_minute == pytest.approx(10 / (14.0 / 60), abs=0.05)
    assert by["A"].longest_monologue_s == pytest.approx(10.0) and by["A"].n_turns == 2
