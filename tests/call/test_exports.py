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


def test_analyze_out_writes_the_snippets_0640_and_a_rerun_drops_those_of_gone_flags(tmp_path):
    from pipeline.call.exports import CallResult, write_local
    from pipeline.manifest import CallManifest

    first = CallResult(CallManifest("c1", status="ok"), snippets={"c1:S1:5.0": b"OggS one", "c1:S1:40.0": b"OggS two"})
    write_local(first, tmp_path)
    folder = tmp_path / "snippets"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"c1:S1:5.0.ogg": b"OggS one", "c1:S1:40.0.ogg": b"OggS two"}
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o640}

    write_local(CallResult(CallManifest("c1", status="ok"), snippets={"c1:S1:5.0": b"OggS new"}), tmp_path)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"c1:S1:5.0.ogg": b"OggS new"}
    write_local(CallResult(CallManifest("c1").quarantine("no speech")), tmp_path)
    assert list(folder.iterdir()) == []
