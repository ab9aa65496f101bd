"""DER and WER helpers: the numbers the targets are stated in."""

from __future__ import annotations

import pytest
from pyannote.core import Annotation, Segment

from pipeline.evaluation import (
    annotation_to_rttm,
    der_from_files,
    diarization_error_rate,
    load_rttm,
    load_stm,
    normalize_text,
    number_to_words,
    read_vtt_text,
    stm_text,
    wer_from_files,
    word_error_rate,
)


def _annotation(*turns: tuple[float, float, str], uri: str = "call") -> Annotation:
    annotation = Annotation(uri=uri)
    for start, end, label in turns:
        annotation[Segment(start, end)] = label
    return annotation


REFERENCE = _annotation((0, 10, "agent"), (10, 20, "customer"), (20, 30, "agent"))


def test_der_is_zero_for_identical_and_relabelled_annotations():
    assert diarization_error_rate(REFERENCE, REFERENCE)["der"] == 0.0
    relabelled = _annotation((0, 10, "SPEAKER_01"), (10, 20, "SPEAKER_00"), (20, 30, "SPEAKER_01"))
    result = diarization_error_rate(REFERENCE, relabelled)
    assert result["der"] == 0.0 and result["correct"] == pytest.approx(result["total"])


def test_der_grows_with_a_swapped_speaker_segment():
    swapped = _annotation((0, 10, "agent"), (10, 20, "customer"), (20, 30, "customer"))
    result = diarization_error_rate(REFERENCE, swapped, collar=0.25)
    # pyannote's collar is the total width (±0.125 s here): 0.75 s of the 30 s is not scored,
    # and 9.75 s of the last turn is confused.
    assert result["total"] == pytest.approx(29.25)
    assert result["confusion"] == pytest.approx(9.75)
    assert result["der"] == pytest.approx(1 / 3)
    assert result["missed_detection"] == result["false_alarm"] == 0.0


def test_missed_speech_and_false_alarm_are_separate_components():
    missing = _annotation((0, 10, "agent"), (20, 30, "agent"))
    assert diarization_error_rate(REFERENCE, missing, collar=0.0)["missed_detection"] == pytest.approx(10)
    extra = _annotation((0, 10, "agent"), (10, 20, "customer"), (20, 30, "agent"), (30, 34, "agent"))
    result = diarization_error_rate(REFERENCE, extra, collar=0.0)
    assert result["false_alarm"] == pytest.approx(4) and result["der"] == pytest.approx(4 / 30)


def test_collar_forgives_small_boundary_shifts():
    shifted = _annotation((0.1, 10.1, "agent"), (10.1, 20.1, "customer"), (20.1, 30.0, "agent"))
    assert diarization_error_rate(REFERENCE, shifted, collar=0.25)["der"] == pytest.approx(0.0)
    assert diarization_error_rate(REFERENCE, shifted, collar=0.0)["der"] > 0.01
    # ±0.125 s does not cover a 0.2 s shift: a 0.25 s collar is md-eval's `-c 0.125`.
    late = _annotation((0.2, 10.2, "agent"), (10.2, 20.2, "customer"), (20.2, 30.0, "agent"))
    assert diarization_error_rate(REFERENCE, late, collar=0.25)["der"] > 0.0
    assert diarization_error_rate(REFERENCE, late, collar=0.5)["der"] == pytest.approx(0.0)


def test_skip_overlap_ignores_overlapped_regions():
    reference = _annotation((0, 10, "agent"), (9, 20, "customer"))
    hypothesis = _annotation((0, 10, "agent"), (10, 20, "customer"))
    assert diarization_error_rate(reference, hypothesis, collar=0.0)["missed_detection"] == pytest.approx(1)
    assert diarization_error_rate(reference, hypothesis, collar=0.0, skip_overlap=True)["der"] == 0.0


def test_der_of_empty_annotations_is_zero_and_empty_hypothesis_is_all_missed():
    assert diarization_error_rate(Annotation(), Annotation())["der"] == 0.0
    assert diarization_error_rate(REFERENCE, Annotation(), collar=0.0)["der"] == pytest.approx(1.0)


def test_rttm_round_trip(tmp_path):
    text = annotation_to_rttm(REFERENCE, "call-7")
    assert text.splitlines()[0].split() == ["SPEAKER", "call-7", "1", "0.000", "10.000",
                                           "<NA>", "<NA>", "agent", "<NA>", "<NA>"]
    path = tmp_path / "ref.rttm"
    path.write_text(text)
    loaded = load_rttm(path)
    assert set(loaded) == {"call-7"}
    turns = lambda a: [(s.start, s.end, label) for s, _, label in a.itertracks(yield_label=True)]  # noqa: E731
    assert turns(loaded["call-7"]) == turns(REFERENCE)
    assert REFERENCE.uri == "call"  # the original keeps its own uri


def test_der_from_files_with_different_uris(tmp_path):
    (tmp_path / "ref.rttm").write_text(annotation_to_rttm(REFERENCE, "synth-000-000"))
    swapped = _annotation((0, 10, "S0"), (10, 20, "S1"), (20, 30, "S1"))
    (tmp_path / "hyp.rttm").write_text(annotation_to_rttm(swapped, "audio"))
    assert der_from_files(tmp_path / "ref.rttm", tmp_path / "hyp.rttm")["der"] == pytest.approx(1 / 3)
    (tmp_path / "empty.rttm").write_text("")
    assert der_from_files(tmp_path / "ref.rttm", tmp_path / "empty.rttm", collar=0.0)["der"] == 1.0


def test_wer_on_known_pairs():
    assert word_error_rate("the cat sat on the mat", "the cat sat on mat") == pytest.approx(1 / 6)
    assert word_error_rate("the cat sat on the mat", "a cat sat on the hat today") == pytest.approx(3 / 6)
    assert word_error_rate("It's OK, Mr. Smith!", "it is okay mister smith") == 0.0
    assert word_error_rate("", "") == 0.0 and word_error_rate("...", "words") == 1.0


@pytest.mark.parametrize(("raw", "normal"), [
    ("Hello,   World!", "hello world"),
    ("I'm sure we can't; they're here and we'll go.", "i am sure we can not they are here and we will go"),
    ("That\u2019s Daniel's modem", "that is daniels modem"),
    ("Pay $50 by 3 o'clock, 1,250 people & 10%",
     "pay fifty dollars by three oclock one thousand two hundred fifty people and ten percent"),
    ("A well-known sign-in / log-out", "a well known sign in log out"),
    ("Alright, OK.", "all right okay"),
])
def test_normalize_text(raw, normal):
    assert normalize_text(raw) == normal


def test_number_to_words():
    assert [number_to_words(n) for n in (0, 13, 40, 105, 2024, 1_000_000)] == [
        "zero", "thirteen", "forty", "one hundred five", "two thousand twenty four", "one million"]


def test_load_stm_skips_comments_and_labels_and_sorts(tmp_path):
    path = tmp_path / "ref.stm"
    path.write_text(";; comment\n"
                    "c1 1 customer 3.500 5.000 Hi, my internet is down.\n"
                    "c1 1 agent 0.500 3.000 <o,f0,female> Thank you for calling.\n\n")
    entries = load_stm(path)
    assert [(e.speaker, e.start, e.end, e.text) for e in entries] == [
        ("agent", 0.5, 3.0, "Thank you for calling."), ("customer", 3.5, 5.0, "Hi, my internet is down.")]
    assert stm_text(entries) == "Thank you for calling. Hi, my internet is down."


VTT = """WEBVTT
Kind: captions

NOTE this block is not a cue

1
00:00:00.500 --> 00:00:03.000
<v SPEAKER_00>Thank you for calling.</v>

00:00:03.500 --> 00:00:05.000
<v SPEAKER_01>Hi, my internet &amp; phone
are down.</v>
"""


def test_read_vtt_text_strips_voice_tags(tmp_path):
    path = tmp_path / "t.vtt"
    path.write_text(VTT)
    assert read_vtt_text(path) == "Thank you for calling. Hi, my internet & phone are down."


def test_wer_from_files(tmp_path):
    (tmp_path / "ref.stm").write_text("c1 1 agent 0.5 3.0 Thank you for calling.\n"
                                      "c1 1 customer 3.5 5.0 Hi, my internet and phone are down.\n")
    (tmp_path / "hyp.vtt").write_text(VTT)
    assert wer_from_files(tmp_path / "ref.stm", tmp_path / "hyp.vtt") == 0.0
    (tmp_path / "bad.vtt").write_text(VTT.replace("calling", "falling"))
    assert wer_from_files(tmp_path / "ref.stm", tmp_path / "bad.vtt") == pytest.approx(1 / 11)
