"""DER and WER helpers: the numbers the targets are stated in."""

from __future__ import annotations

import pytest
from pyannote.core import Annotation, Segment

import json
import subprocess
import sys

from pipeline.call.exports import to_rttm
from pipeline import cli
from pipeline.devtools.evaluation import (
    der_from_files,
    diarization_error_rate,
    find_leaks,
    identifier_leaked,
    load_rttm,
    load_stm,
    map_speakers,
    normalize_text,
    number_to_words,
    read_vtt_cues,
    read_vtt_text,
    roles_right,
    score_diarization,
    stm_text,
    wer_from_files,
    word_error_counts,
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
    text = to_rttm(REFERENCE, "call-7")
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
    (tmp_path / "ref.rttm").write_text(to_rttm(REFERENCE, "synth-000-000"))
    swapped = _annotation((0, 10, "S0"), (10, 20, "S1"), (20, 30, "S1"))
    (tmp_path / "hyp.rttm").write_text(to_rttm(swapped, "audio"))
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


# ----- per-file and total scores --------------------------------------------------------------

SWAPPED = _annotation((0, 10, "S0"), (10, 20, "S1"), (20, 30, "S1"))  # DER 1/3 against REFERENCE
LATE = _annotation((0, 10, "S0"), (10, 20, "S1"))  # misses the last 10 s of 30


def test_score_diarization_total_is_accumulated_not_averaged():
    short = _annotation((0, 5, "agent"), (5, 10, "customer"))
    short_hyp = _annotation((0, 10, "S0"))  # 5 s of 10 confused, DER 0.5
    report = score_diarization([("a", REFERENCE, SWAPPED), ("b", short, short_hyp)], collar=0.0, jer=True)
    a, b = report.files
    assert (a.uri, a.der, a.confusion, a.ref_speakers, a.hyp_speakers) == ("a", pytest.approx(1 / 3), 10.0, 2, 2)
    assert (b.der, b.confusion, b.hyp_speakers) == (pytest.approx(0.5), 5.0, 1)
    total = report.total
    assert total.uri == "TOTAL" and total.total == 40.0 and total.confusion == 15.0
    assert total.der == pytest.approx(15 / 40)  # not the mean of 1/3 and 1/2
    assert (total.ref_speakers, total.hyp_speakers) == (4, 3)
    assert 0.0 < a.jer < 1.0 and total.jer is not None
    assert score_diarization([("a", REFERENCE, REFERENCE)]).files[0].jer is None


def _counts(reference: str, hypothesis: str) -> tuple[int, int, int, int]:
    s = word_error_counts(reference, hypothesis)
    return s.ref_words, s.substitutions, s.deletions, s.insertions


def test_word_error_counts():
    assert _counts("the cat sat on the mat", "the cat sat on mat") == (6, 0, 1, 0)
    assert _counts("the cat sat on the mat", "the cat sat on the mat today") == (6, 0, 0, 1)
    assert _counts("the cat sat on the mat", "the bat sat on the hat") == (6, 2, 0, 0)
    score = word_error_counts("the cat sat on the mat", "a cat sat on mat today", name="x")
    assert score.name == "x" and score.errors == 3 and score.wer == pytest.approx(0.5)
    empty = word_error_counts("", "hello there")
    assert (empty.ref_words, empty.insertions, empty.wer) == (0, 2, 1.0)
    assert word_error_counts("...", "").wer == 0.0


def test_read_vtt_cues_times_and_voices(tmp_path):
    path = tmp_path / "t.vtt"
    path.write_text(VTT.replace("<v SPEAKER_01>", "<v SPEAKER_01 (customer)>")
                    + "\n01:02:03.250 --> 01:02:04.000\nNo voice.\n")
    cues = read_vtt_cues(path)
    assert [(c.start, c.end, c.voice) for c in cues] == [
        (0.5, 3.0, "SPEAKER_00"), (3.5, 5.0, "SPEAKER_01 (customer)"), (3723.25, 3724.0, None)]
    assert cues[1].text == "Hi, my internet & phone are down."


def test_wer_can_leave_out_spans_on_both_sides(tmp_path):
    (tmp_path / "ref.stm").write_text("c1 1 agent 0.5 3.0 Thank you for calling.\n"
                                      "c1 1 customer 3.5 5.0 Hi, my internet and phone are down.\n")
    (tmp_path / "hyp.vtt").write_text(VTT.replace("internet &amp; phone", "[PHONE] [CARD]"))
    assert wer_from_files(tmp_path / "ref.stm", tmp_path / "hyp.vtt") > 0.2
    assert wer_from_files(tmp_path / "ref.stm", tmp_path / "hyp.vtt", exclude=[(3.4, 5.1)]) == 0.0


def test_map_speakers_and_roles_right():
    reference = _annotation((0, 10, "agent"), (10, 20, "customer"), (20, 24, "supervisor"))
    hypothesis = _annotation((0, 9, "SPEAKER_00"), (9, 20, "SPEAKER_01"), (20, 24, "SPEAKER_01"))
    assert map_speakers(reference, hypothesis) == {"SPEAKER_00": "agent", "SPEAKER_01": "customer"}
    right = {"SPEAKER_00": "agent", "SPEAKER_01": "customer"}
    assert roles_right(reference, hypothesis, right)
    assert not roles_right(reference, hypothesis, {"SPEAKER_00": "customer", "SPEAKER_01": "agent"})
    # Everything in one speaker: no hypothesis speaker maps to the customer.
    assert not roles_right(reference, _annotation((0, 24, "SPEAKER_00")), {"SPEAKER_00": "agent"})
    # A split agent is right only if both halves are labelled agent.
    split = _annotation((0, 5, "A"), (5, 10, "B"), (10, 20, "C"))
    assert roles_right(reference, split, {"A": "agent", "B": "agent", "C": "customer"})
    assert not roles_right(reference, split, {"A": "agent", "B": "other", "C": "customer"})


@pytest.mark.parametrize(("text", "kind", "value", "leaked"), [
    ("Four five three nine, one four eight eight, zero three four three, six four six seven.", "card",
     "4539148803436467", True),
    ("My card is 4539-1488-0343-6467", "card", "4539148803436467", True),
    ("It is 4539 1488 [CARD] ", "card", "4539148803436467", True),  # eight digits left
    ("The card ending in 6467.", "card", "4539148803436467", False),
    ("The card number is [CARD_NUMBER].", "card", "4539148803436467", False),
    ("Call me on (212) 555-0142", "phone", "2125550142", True),
    ("Call me on two one two, five five five, oh one four two", "phone", "2125550142", True),
    ("Call me on [PHONE]", "phone", "2125550142", False),
    ("It is sunny.fox84@quickmail.com", "email", "sunny.fox84@quickmail.com", True),
    ("It is Sunny dot Fox 84 at quick mail dot com", "email", "sunny.fox84@quickmail.com", True),
    ("It is [EMAIL] at [EMAIL].", "email", "sunny.fox84@quickmail.com", False),
    ("It is the twelfth of March, nineteen eighty-four.", "dob", "1984-03-12", True),
    ("Born 12th March", "dob", "1984-03-12", True),
    ("Born in 1984", "dob", "1984-03-12", True),
    ("It is [DATE_OF_BIRTH].", "dob", "1984-03-12", False),
    ("Sometime in March, on the 3rd floor", "dob", "1984-03-12", False),
])
def test_identifier_leaked(text, kind, value, leaked):
    assert identifier_leaked(text, kind, value) is leaked


def test_find_leaks_checks_each_text_on_its_own():
    planted = [{"kind": "card", "value": "4539148803436467"}, {"kind": "dob", "value": "1984-03-12"}]
    texts = [("vtt", "It is the [DOB]."), ("vtt", "Card 453914"), ("utterances.text", "8803436467")]
    leaks = find_leaks(texts, planted)
    assert [(leak.kind, leak.source) for leak in leaks] == [("card", "vtt"), ("card", "utterances.text")]
    # Digits are not joined across texts: 453 in one cue and 914 in the next is no leak.
    assert not find_leaks([("vtt", "453"), ("vtt", "914")], planted)


# ----- callaffect eval --------------------------------------------------------------------------

@pytest.fixture
def rttms(tmp_path):
    """Two references in one file (uris c1, c2), hypotheses in one file each."""
    (tmp_path / "ref.rttm").write_text(to_rttm(REFERENCE, "c1") + to_rttm(REFERENCE, "c2"))
    (tmp_path / "hyp_c1.rttm").write_text(to_rttm(SWAPPED, "c1"))
    (tmp_path / "hyp_c2.rttm").write_text(to_rttm(LATE, "c2"))
    return tmp_path


def test_eval_arguments_repeat_or_take_several_files():
    parser = cli.build_parser()
    args = parser.parse_args(["eval", "asr", "--ref", "a.stm", "--hyp", "a.vtt", "--ref", "b.stm", "--hyp", "b.vtt"])
    assert (args.ref, args.hyp, args.json) == (["a.stm", "b.stm"], ["a.vtt", "b.vtt"], False)
    args = parser.parse_args(["eval", "diarization", "--ref", "r1", "r2", "--hyp", "h", "--skip-overlap"])
    assert (args.ref, args.collar, args.skip_overlap, args.jer) == (["r1", "r2"], 0.25, True, False)
    assert callable(args.fn)


def test_eval_diarization_by_uri_json(rttms, capsys):
    code = cli.main(["eval", "diarization", "--ref", str(rttms / "ref.rttm"), "--hyp", str(rttms / "hyp_c2.rttm"),
                      str(rttms / "hyp_c1.rttm"), "--collar", "0", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["metric"], out["collar"], out["skip_overlap"]) == ("der", 0.0, False)
    files = {f["uri"]: f for f in out["files"]}
    assert files["c1"]["der"] == pytest.approx(1 / 3) and files["c1"]["confusion"] == pytest.approx(10)
    assert files["c2"]["der"] == pytest.approx(1 / 3) and files["c2"]["missed_detection"] == pytest.approx(10)
    assert (files["c1"]["ref_speakers"], files["c1"]["hyp_speakers"]) == (2, 2)
    total = out["total"]
    assert total["der"] == pytest.approx(20 / 60) and total["total"] == pytest.approx(60)
    assert total["confusion"] == pytest.approx(10) and total["missed_detection"] == pytest.approx(10)
    assert total["jer"] is None


def test_eval_diarization_by_order_table(tmp_path, capsys):
    (tmp_path / "ref.rttm").write_text(to_rttm(REFERENCE, "synth-000-000"))
    (tmp_path / "hyp.rttm").write_text(to_rttm(SWAPPED, "audio"))
    code = cli.main(["eval", "diarization", "--ref", str(tmp_path / "ref.rttm"), "--hyp", str(tmp_path / "hyp.rttm"),
                      "--jer"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["file", "DER", "confusion_s"] and lines[0].split()[-1] == "JER"
    row = lines[2].split()
    # collar 0.25: 9.75 s confused of 29.25 s scored
    assert row[:3] == ["synth-000-000", "0.3333", "9.75"] and row[5:7] == ["29.25", "2/2"]
    assert lines[4].split()[:2] == ["TOTAL", "0.3333"]
    assert lines[5].startswith("collar 0.25 s total width (±0.125 s")


def test_eval_diarization_unmatched_or_missing_exits_1(rttms, capsys):
    missing = rttms / "nope.rttm"
    assert cli.main(["eval", "diarization", "--ref", str(rttms / "ref.rttm"), "--hyp", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("callaffect eval: error: no such file:") and "nope.rttm" in err
    # c2 has no hypothesis, and one reference file holds two recordings: nothing to pair by order.
    code = cli.main(["eval", "diarization", "--ref", str(rttms / "ref.rttm"), "--hyp", str(rttms / "hyp_c1.rttm")])
    assert code == 1
    assert "no hypothesis for c2" in capsys.readouterr().err


@pytest.fixture
def transcripts(tmp_path):
    (tmp_path / "a.stm").write_text("ca 1 agent 0.5 3.0 Thank you for calling.\n"
                                    "ca 1 customer 3.5 5.0 Hi, my internet and phone are down.\n")
    (tmp_path / "a.vtt").write_text(VTT.replace("calling", "falling"))  # 1 substitution of 11
    (tmp_path / "b.stm").write_text("cb 1 agent 0.0 2.0 It's OK, Mr. Smith!\n")
    (tmp_path / "b.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:02.000\n"
                                    "<v SPEAKER_00>it is okay mister smith and more\n")
    return tmp_path


def test_eval_asr_per_file_and_total(transcripts, capsys):
    t = transcripts
    code = cli.main(["eval", "asr", "--ref", str(t / "a.stm"), "--hyp", str(t / "a.vtt"),
                      "--ref", str(t / "b.stm"), "--hyp", str(t / "b.vtt"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["normaliser"] == "pipeline.devtools.evaluation.normalize_text"
    a, b = out["files"]
    assert (a["name"], a["ref_words"], a["substitutions"], a["wer"]) == ("ca", 11, 1, pytest.approx(1 / 11))
    assert (b["name"], b["ref_words"], b["insertions"], b["wer"]) == ("cb", 5, 2, pytest.approx(2 / 5))
    assert out["total"]["ref_words"] == 16 and out["total"]["errors"] == 3
    assert out["total"]["wer"] == pytest.approx(3 / 16)  # summed, not the mean of the files'
    assert cli.main(["eval", "asr", "--ref", str(t / "a.stm"), str(t / "b.stm"),
                      "--hyp", str(t / "a.vtt"), str(t / "b.vtt")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [r.split()[:2] for r in table[2:4]] == [["ca", "0.0909"], ["cb", "0.4000"]]
    assert table[-1].split() == ["TOTAL", "0.1875", "16", "1", "0", "2"]


def test_eval_asr_errors_exit_1(transcripts, capsys):
    t = transcripts
    assert cli.main(["eval", "asr", "--ref", str(t / "a.stm"), str(t / "b.stm"), "--hyp", str(t / "a.vtt")]) == 1
    assert "paired in order" in capsys.readouterr().err
    assert cli.main(["eval", "asr", "--ref", str(t / "missing.stm"), "--hyp", str(t / "a.vtt")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_eval_runs_as_a_command(transcripts):
    t = transcripts
    ok = subprocess.run([sys.executable, "-m", "pipeline.cli", "eval", "asr", "--ref", str(t / "a.stm"),
                         "--hyp", str(t / "a.vtt"), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["total"]["substitutions"] == 1
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "eval", "diarization", "--ref", str(t / "x.rttm"),
                          "--hyp", str(t / "y.rttm")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout == "" and "no such file" in bad.stderr
