"""The call's text exports: RTTM and WebVTT."""

from __future__ import annotations

from pipeline.call.exports import to_rttm, to_webvtt
from pipeline.records import Utterance

from record_factories import turns_from_spans as _turns, words_from_text as _words


def test_rttm_and_webvtt_writers():
    turns = _turns(("SPEAKER_00", 0.5, 2.0), ("SPEAKER_01", 2.5, 3.25))
    assert to_rttm(turns, "c1").splitlines() == [
        "SPEAKER c1 1 0.500 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>",
        "SPEAKER c1 1 2.500 0.750 <NA> <NA> SPEAKER_01 <NA> <NA>",
    ]
    vtt = to_webvtt([Utterance(0, "SPEAKER_00", 3661.5, 3662.0, tuple(_words("hi", 3661.5)))], {"SPEAKER_00": "agent"})
    assert vtt.startswith("WEBVTT\n") and "01:01:01.500 --> 01:01:02.000" in vtt and "<v SPEAKER_00 (agent)>hi" in vtt
