"""Fusion of the modalities per speaker window, and the frustration flags built on it."""

from __future__ import annotations

import json

from pipeline.settings import AffectSettings, FlagSettings
from pipeline.stages import flags, fusion
from pipeline.records import AffectWindow, SpeakerWindow, TextValence, Utterance, VoiceArousal

from record_factories import turns_from_spans as _turns, words_from_text as _words


def test_fusion_shrinks_weak_evidence_and_allows_missing_modalities():
    turns = _turns(("A", 0.0, 10.0))
    windows = fusion.speaker_windows(turns, AffectSettings(window_s=5, hop_s=5))
    assert windows == [SpeakerWindow("A", 0.0, 5.0), SpeakerWindow("A", 5.0, 10.0)]
    utts = [Utterance(0, "A", 0.5, 4.5, tuple(_words("awful", 0.5)))]
    out = fusion.fuse(windows, utts, [TextValence(0, -0.9, 0.9)], [VoiceArousal(0.6, 0.8), VoiceArousal(None, 0.0)], AffectSettings(window_s=5, hop_s=5))
    first, second = out
    assert -0.9 < first.valence < -0.5 and first.modalities == ("text", "voice")
    assert 0.3 < first.arousal < 0.6
    assert second.valence == 0.0 and second.arousal == 0.0 and second.confidence == 0.0 and second.modalities == ()
    for w in out:
        assert -1 <= w.valence <= 1 and -1 <= w.arousal <= 1 and 0 <= w.confidence <= 1


def _window(start, valence, arousal, speaker="C", confidence=0.8):
    return AffectWindow(speaker, start, start + 5.0, valence, arousal, confidence, valence, None, arousal, ("text", "voice"))


def test_quarter_summary_sums_each_speakers_windows_by_midpoint_weighted_by_confidence_seconds():
    windows = [
        AffectWindow("C", 0.0, 5.0, -0.6, 0.2, 0.5, None, None, 0.2, ("voice",)),
        AffectWindow("C", 10.0, 20.0, -0.2, 0.4, 1.0, -0.2, None, 0.4, ("text", "voice")),
        AffectWindow("C", 17.5, 22.5, 0.3, 0.0, 0.8, 0.3, None, 0.0, ("text", "voice")),  # midpoint 20: quarter 2
        AffectWindow("D", 70.0, 75.0, 0.9, 0.9, 0.0, 0.9, None, 0.9, ("text", "voice")),  # no confidence
    ]
    got = {(q.speaker, q.quarter): q for q in fusion.quarter_summary(windows, 80.0)}
    assert sorted(got) == [("C", 1), ("C", 2), ("D", 4)]
    q1 = got["C", 1]
    assert (q1.windows, q1.weight_s) == (2, 2.5 + 10.0)
    assert q1.valence == (-0.6 * 2.5 + -0.2 * 10.0) / 12.5 and q1.arousal == (0.2 * 2.5 + 0.4 * 10.0) / 12.5
    assert (got["C", 2].windows, got["C", 2].weight_s, got["C", 2].valence) == (1, 4.0, 0.3)
    assert got["D", 4].weight_s == 0.0 and got["D", 4].valence is None and got["D", 4].arousal is None
    assert fusion.quarter_summary(windows, 0.0) == []


def test_frustration_flags_merge_filter_and_explain():
    s = FlagSettings(valence_max=-0.2, arousal_min=0.1, min_duration_s=4.0, merge_gap_s=3.0, min_confidence=0.3)
    windows = [
        _window(10.0, -0.6, 0.5), _window(12.5, -0.5, 0.4),  # merged into one segment
        _window(40.0, -0.3, -0.5),  # negative but calm and not very negative: no flag
        _window(60.0, -0.7, 0.6, speaker="AGENT"),  # not a customer
        _window(80.0, -0.8, 0.8, confidence=0.1),  # too unsure
    ]
    utts = [Utterance(3, "C", 11.0, 14.0, tuple(_words("this is ridiculous", 11.0)))]
    out = flags.frustration_flags(windows, {"C"}, utts, s, "call1")
    assert len(out) == 1
    flag = out[0]
    assert (flag.start, flag.end) == (10.0, 17.5)
    assert 0 < flag.score <= 1 and flag.mean_valence < -0.4
    assert json.loads(flag.evidence)["utterance_ids"] == [3]
