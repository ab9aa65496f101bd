"""Unit tests of the pure parts of the stages (no models): attribution, roles, fusion, flags,
clustering and smoothing, and the RTTM/WebVTT writers."""

import json

import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from pipeline.call.analyze import to_rttm, to_webvtt
from pipeline.settings import AffectSettings, DiarizationSettings, FlagSettings
from pipeline.stages.text import attribution, roles
from pipeline.stages.audio import diarization
from pipeline.stages import flags, fusion
from pipeline.stages.text.attribution import Utterance, build_utterances
from pipeline.stages.text.text_affect import TextValence, score_utterances
from pipeline.stages.audio.transcription import Word
from pipeline.stages.voice.voice_affect import VoiceArousal


def _turns(*spans):
    ann = Annotation(uri="t")
    for speaker, start, end in spans:
        ann[Segment(start, end)] = speaker
    return ann


def _words(text, start, step=0.3, p=0.9):
    return [Word(start + i * step, start + i * step + 0.25, " " + w, p) for i, w in enumerate(text.split())]


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


def test_fusion_shrinks_weak_evidence_and_allows_missing_modalities():
    turns = _turns(("A", 0.0, 10.0))
    windows = fusion.speaker_windows(turns, AffectSettings(window_s=5, hop_s=5))
    assert windows == [("A", 0.0, 5.0), ("A", 5.0, 10.0)]
    utts = [Utterance(0, "A", 0.5, 4.5, tuple(_words("awful", 0.5)))]
    out = fusion.fuse(windows, utts, [TextValence(0, -0.9, 0.9)], [VoiceArousal(0.6, 0.8), VoiceArousal(None, 0.0)], AffectSettings(window_s=5, hop_s=5))
    first, second = out
    assert -0.9 < first.valence < -0.5 and first.modalities == ("text", "voice")
    assert 0.3 < first.arousal < 0.6
    assert second.valence == 0.0 and second.arousal == 0.0 and second.confidence == 0.0 and second.modalities == ()
    for w in out:
        assert -1 <= w.valence <= 1 and -1 <= w.arousal <= 1 and 0 <= w.confidence <= 1


def _window(start, valence, arousal, speaker="C", confidence=0.8):
    return fusion.AffectWindow(speaker, start, start + 5.0, valence, arousal, confidence, valence, None, arousal, ("text", "voice"))


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


def test_clustering_counts_speakers_on_separable_embeddings():
    rng = np.random.default_rng(0)
    base = rng.normal(size=256)  # a shared "channel" direction, as on one phone line
    settings = DiarizationSettings()
    for k in (1, 2, 3, 4):
        centres = [base + 0.6 * rng.normal(size=256) for _ in range(k)]
        x = np.concatenate([c + 0.15 * rng.normal(size=(25, 256)) for c in centres])
        labels = diarization.cluster_embeddings(x.astype(np.float32), settings)
        assert len(set(labels)) == k, k
    # A hint caps the count.
    labels = diarization.cluster_embeddings(x.astype(np.float32), settings, diarization.SpeakerHints(max_speakers=2))
    assert len(set(labels)) == 2


def test_smoothing_absorbs_short_runs():
    labels = np.array([0] * 50 + [1] * 5 + [0] * 50 + [1] * 60)
    out = diarization._smooth(labels, 30)
    assert out[:105].tolist() == [0] * 105 and out[105:].tolist() == [1] * 60


def test_rttm_and_webvtt_writers():
    turns = _turns(("SPEAKER_00", 0.5, 2.0), ("SPEAKER_01", 2.5, 3.25))
    assert to_rttm(turns, "c1").splitlines() == [
        "SPEAKER c1 1 0.500 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER c1 1 2.500 0.750 <NA> <NA> SPEAKER_01 <NA> <NA>",
    ]
    vtt = to_webvtt([Utterance(0, "SPEAKER_00", 3661.5, 3662.0, tuple(_words("hi", 3661.5)))], {"SPEAKER_00": "agent"})
    assert vtt.startswith("WEBVTT\n") and "01:01:01.500 --> 01:01:02.000" in vtt and "<v SPEAKER_00 (agent)>hi" in vtt


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


def test_chunked_mel_frames_equal_resemblyzer_whole_signal():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000 * 7 + 123)).astype(np.float32)
    whole = diarization._import_resemblyzer().audio.wav_to_mel_spectrogram(x)
    chunked = diarization._mel_frames(x, chunk_frames=97)  # many chunk borders
    assert chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() <= 1e-5 * np.abs(whole).max()


def test_voice_frames_in_chunks_equal_one_pass():
    from pipeline.stages.voice import voice_affect

    rng = np.random.default_rng(0)
    t = np.arange(16000 * 25) / 16000
    x = (0.3 * np.sin(2 * np.pi * (150 + 30 * np.sin(t)) * t) * (rng.random(len(t)) > 0.2) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    whole = voice_affect.extract_frames(x, 16000, chunk_s=1e9)
    chunked = voice_affect.extract_frames(x, 16000, chunk_s=7.0)
    assert len(chunked.loudness) == len(whole.loudness)
    assert np.allclose(chunked.loudness, whole.loudness) and np.allclose(chunked.f0_semitones, whole.f0_semitones)


def test_turn_index_matches_annotation_overlap():
    turns = _turns(("A", 0.0, 2.0), ("B", 1.5, 4.0), ("A", 6.0, 7.0))
    index = attribution.TurnIndex(turns)
    assert index.speaker_of(Word(1.4, 1.9, "x", 1.0)) == "A"  # 0.5 s with A, 0.4 s with B
    assert index.speaker_of(Word(1.6, 2.4, "x", 1.0)) == "B"
    assert index.speaker_of(Word(4.5, 4.8, "x", 1.0)) == "B"  # nearest turn, 0.5 s away
    assert index.speaker_of(Word(5.2, 5.3, "x", 1.0)) == "A"
    assert index.speaker_of(Word(9.0, 9.2, "x", 1.0)) == attribution.UNKNOWN_SPEAKER
