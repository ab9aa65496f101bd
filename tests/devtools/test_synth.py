"""The synthetic call generator: audio, truth files and the properties the truth promises."""

from __future__ import annotations

import json
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline import metadata as call_metadata
from pipeline.devtools.evaluation import identifier_leaked, load_rttm, load_stm
from pipeline.devtools.synth.bad_inputs import write_bad_inputs
from pipeline.devtools.synth.call_sets import generate_demo_set
from pipeline.devtools.synth.calls import SyntheticCall, generate_call, render_call
from pipeline.devtools.synth.identifiers import luhn_check_digit
from pipeline.devtools.synth.long_call import generate_long_call
from pipeline.devtools.synth.voices import pick_voices

ANGRY_WORDS = ("ridiculous", "furious", "worst")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[list[SyntheticCall], float, Path]:
    """The default demo set: 2 speakers/WAV/20 dB, 3 speakers/FLAC/15 dB, 2 speakers/MP3/wideband."""
    root = tmp_path_factory.mktemp("demo")
    started = time.perf_counter()
    calls = generate_demo_set(root / "raw", n_calls=3, seed=0, truth_dir=root / "truth")
    return calls, time.perf_counter() - started, root


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=sample_rate,codec_name:format=duration",
         "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_demo_set_is_varied_and_fast(demo):
    calls, seconds, root = demo
    assert [c.n_speakers for c in calls] == [2, 3, 2]
    assert [c.audio_path.suffix for c in calls] == [".wav", ".flac", ".mp3"]
    assert len({c.scenario for c in calls}) == 3
    assert calls[2].frustrated_span is None and calls[0].frustrated_span is not None
    for c in calls:
        assert 45 <= c.duration_s <= 120
        assert c.audio_path.parent == c.metadata_path.parent == root / "raw"
        assert c.rttm_path.parent == c.stm_path.parent == root / "truth"
    # Well under 5 s per call on an idle machine; this bound leaves room for a busy one.
    assert seconds / len(calls) < 5.0


def test_audio_decodes_at_expected_rate_and_duration_matches_rttm(demo):
    calls, _, _ = demo
    telephone_wav, telephone_flac, wideband_mp3 = calls
    info = sf.info(telephone_wav.audio_path)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW")
    assert sf.info(telephone_flac.audio_path).samplerate == 8000
    probe = _ffprobe(wideband_mp3.audio_path)
    assert probe["streams"][0]["codec_name"] == "mp3"
    assert probe["streams"][0]["sample_rate"] == "16000"
    for c in calls:
        if c.audio_path.suffix == ".mp3":
            duration = float(_ffprobe(c.audio_path)["format"]["duration"])
        else:
            audio, rate = sf.read(c.audio_path)
            duration = len(audio) / rate
            assert rate == c.sample_rate
        assert duration == pytest.approx(c.duration_s, abs=0.1)
        extent = load_rttm(c.rttm_path)[c.call_id].get_timeline().extent()
        assert 0.3 <= extent.start and extent.end <= duration <= extent.end + 1.5


def test_m4a_container_decodes(tmp_path):
    call = generate_call(tmp_path, "m4a", seed=3, n_speakers=4, fmt="m4a", snr_db=20.0)
    probe = _ffprobe(call.audio_path)
    assert probe["streams"][0]["codec_name"] == "aac"
    assert probe["streams"][0]["sample_rate"] == "8000"
    assert float(probe["format"]["duration"]) == pytest.approx(call.duration_s, abs=0.2)
    assert len(load_rttm(call.rttm_path)[call.call_id].labels()) == 4


def test_rttm_speakers_and_clean_turns(demo):
    calls, _, _ = demo
    for c in calls:
        annotation = load_rttm(c.rttm_path)[c.call_id]
        assert len(annotation.labels()) == c.n_speakers
        assert {"agent", "customer"} <= set(annotation.labels())
        assert c.turns[0].speaker == "agent" and "Thank you for calling" in c.turns[0].text
        for prev, nxt in zip(c.turns, c.turns[1:]):
            gap = nxt.start - prev.end
            assert 0.19 <= gap <= 0.81, (prev, nxt)
    assert "supervisor" in load_rttm(calls[1].rttm_path)[calls[1].call_id].labels()


def test_overlap_option_marks_overlaps_in_truth(tmp_path):
    call = generate_call(tmp_path, "ov", seed=4, overlap=True, snr_db=None)
    overlaps = [(a, b) for a, b in zip(call.turns, call.turns[1:]) if b.start < a.end]
    assert 1 <= len(overlaps) <= 3
    assert all(a.speaker != b.speaker for a, b in overlaps)
    annotation = load_rttm(call.rttm_path)[call.call_id]
    assert annotation.get_overlap().duration() > 0.2


def test_frustrated_span_is_the_customers_angry_stretch(demo):
    calls, _, _ = demo
    for c in calls[:2]:
        start, end = c.frustrated_span
        customer = [t for t in c.turns if t.speaker == "customer"]
        assert start in [t.start for t in customer] and end in [t.end for t in customer]
        inside = [t for t in c.turns if start <= t.start and t.end <= end]
        speech = sum(t.end - t.start for t in inside if t.speaker == "customer")
        assert speech / (end - start) >= 0.65
        said = " ".join(t.text.lower() for t in inside if t.speaker == "customer")
        assert all(w in said for w in ANGRY_WORDS)
        # Said faster than the customer's calm turns (espeak -s), so arousal cues change.
        rate = lambda ts: np.median([len(t.text.split()) / (t.end - t.start) for t in ts])  # noqa: E731
        calm = [t for t in customer if t not in inside and len(t.text.split()) >= 6]
        assert rate([t for t in inside if t.speaker == "customer"]) > 1.15 * rate(calm)
    assert not any(w in t.text.lower() for t in calls[2].turns for w in ANGRY_WORDS)


def test_angry_voice_is_louder_and_higher():
    rendered = render_call(seed=0, telephone=False, snr_db=None)
    rate = rendered.sample_rate
    start, end = rendered.frustrated_span

    def cues(turns):
        audio = np.concatenate([rendered.speech[int(t.start * rate):int(t.end * rate)] for t in turns])
        spectrum = np.abs(np.fft.rfft(audio))
        freqs = np.fft.rfftfreq(len(audio), 1 / rate)
        return np.sqrt(np.mean(audio ** 2)), np.sum(freqs * spectrum) / np.sum(spectrum)

    customer = [t for t in rendered.turns if t.speaker == "customer"]
    angry = [t for t in customer if start <= t.start < end]
    calm = [t for t in customer if not start <= t.start < end]
    (angry_rms, angry_centroid), (calm_rms, calm_centroid) = cues(angry), cues(calm)
    assert 20 * np.log10(angry_rms / calm_rms) > 1.0
    assert angry_centroid > calm_centroid


def test_stm_and_metadata(demo):
    calls, _, _ = demo
    for c in calls:
        entries = load_stm(c.stm_path)
        assert [(e.speaker, e.start, e.end, e.text) for e in entries] == [tuple(t) for t in c.turns]
        assert {e.file for e in entries} == {c.call_id}
        meta = json.loads(c.metadata_path.read_text())
        assert meta["call_id"] == c.call_id
        assert "roles" not in meta  # the pipeline infers roles; the truth is the RTTM labels
        assert meta["consent"] == {"voice_affect": True, "text_affect": True, "video": False}
        assert call_metadata.parse(c.metadata_path.read_bytes()).call_id == c.call_id  # under the contract


def test_same_seed_same_call_other_seed_other_call(demo, tmp_path):
    calls, _, _ = demo
    first = calls[0]
    again = generate_call(tmp_path, first.call_id, seed=0, n_speakers=2, snr_db=20.0, fmt="wav")
    assert again.turns == first.turns and again.frustrated_span == first.frustrated_span
    assert again.rttm_path.read_bytes() == first.rttm_path.read_bytes()
    assert again.audio_path.read_bytes() == first.audio_path.read_bytes()
    other = generate_call(tmp_path, "other", seed=4, n_speakers=2, snr_db=20.0)
    assert other.scenario == first.scenario  # same script, other voices and timing
    assert [t.start for t in other.turns] != [t.start for t in first.turns]


@pytest.mark.parametrize("snr_db", [20.0, 10.0])
def test_snr_as_requested(tmp_path, snr_db):
    call = generate_call(tmp_path, "snr", seed=1, snr_db=snr_db)
    rendered = render_call(seed=1, snr_db=snr_db)
    written, _ = sf.read(call.audio_path)  # μ-law decoded
    assert len(written) == len(rendered.speech)
    active = rendered.active_mask()
    noise = written - rendered.speech  # the added noise plus μ-law's quantisation error
    measured = 10 * np.log10(np.mean(rendered.speech[active] ** 2) / np.mean(noise ** 2))
    assert measured == pytest.approx(snr_db, abs=1.5)


def test_no_noise_when_snr_is_none():
    rendered = render_call(seed=2, snr_db=None, telephone=False)
    assert rendered.sample_rate == 16000
    assert not rendered.noise.any()
    assert np.all(rendered.speech[~rendered.active_mask()] == 0)


def test_telephone_band_removes_low_and_high_frequencies():
    rendered = render_call(seed=2, snr_db=None)
    spectrum = np.abs(np.fft.rfft(rendered.speech)) ** 2
    freqs = np.fft.rfftfreq(len(rendered.speech), 1 / rendered.sample_rate)
    in_band = spectrum[(freqs > 400) & (freqs < 3200)].mean()
    assert spectrum[freqs < 150].mean() < in_band / 100
    assert spectrum[freqs > 3800].mean() < in_band / 100


def test_bad_inputs(tmp_path):
    paths = write_bad_inputs(tmp_path)
    assert set(paths) == {"empty.wav", "truncated.wav", "not_media.mp3", "silent.wav"}
    assert paths["empty.wav"].stat().st_size == 0
    head = paths["truncated.wav"].read_bytes()
    assert head[:4] == b"RIFF" and head[8:12] == b"WAVE" and head[36:40] == b"data"
    claimed = struct.unpack("<I", head[40:44])[0]
    assert claimed > 100 * (len(head) - 44)
    assert subprocess.run(["ffprobe", "-v", "error", str(paths["not_media.mp3"])],
                          capture_output=True).returncode != 0
    silent, rate = sf.read(paths["silent.wav"])
    assert rate == 16000 and len(silent) == 10 * 16000 and not silent.any()


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x ** 2) + 1e-20)


def _alone(turns, i) -> bool:
    """Turn i overlaps no other turn."""
    t = turns[i]
    return all(u.end <= t.start or t.end <= u.start for j, u in enumerate(turns) if j != i)


def test_stereo_puts_the_agent_alone_on_channel_0(tmp_path):
    call = generate_call(tmp_path, "st", seed=5, n_speakers=3, stereo=True, overlap=True, snr_db=20.0)
    info = sf.info(call.audio_path)
    assert (info.channels, info.samplerate, info.subtype) == (2, 8000, "ULAW")
    audio, rate = sf.read(call.audio_path)
    for i, t in enumerate(call.turns):
        if not _alone(call.turns, i):
            continue
        seg = audio[int(t.start * rate):int(t.end * rate)]
        own, other = (0, 1) if t.speaker == "agent" else (1, 0)
        # The other channel carries only its own noise, 20 dB under its leg's mean speech level
        # (a quiet speaker's turn, pauses included, sits less far above it).
        assert _db(seg[:, own]) - _db(seg[:, other]) > 6.0, t
    # Before noise: nothing of the agent on channel 1, nor of anyone else on channel 0 (only the
    # phone-line filters' tails, over 60 dB down).
    rendered = render_call(seed=5, n_speakers=3, stereo=True, overlap=True, snr_db=20.0)
    agent = _mask([t for t in rendered.turns if t.speaker == "agent"], len(rendered.speech), rate)
    others = _mask([t for t in rendered.turns if t.speaker != "agent"], len(rendered.speech), rate)
    ch0, ch1 = rendered.speech[:, 0], rendered.speech[:, 1]
    assert _db(ch1[agent & ~others]) < _db(ch1[others]) - 60
    assert _db(ch0[others & ~agent]) < _db(ch0[agent]) - 60
    # The truth is the mono call's; the channel map is only given when asked for.
    assert rendered.turns == render_call(seed=5, n_speakers=3, overlap=True, snr_db=20.0).turns
    assert load_rttm(call.rttm_path)[call.call_id].labels() == ["agent", "customer", "supervisor"]
    assert "channels" not in json.loads(call.metadata_path.read_text())
    mapped = generate_call(tmp_path, "st-map", seed=6, stereo=True, channel_map_in_metadata=True)
    assert json.loads(mapped.metadata_path.read_text())["channels"] == {"0": "agent", "1": "customer"}


def _mask(turns, n: int, rate: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for t in turns:
        mask[int(t.start * rate):int(np.ceil(t.end * rate)) + 1] = True
    return mask


def test_stereo_snr_holds_per_channel():
    rendered = render_call(seed=2, stereo=True, snr_db=10.0)
    for k, side in ((0, {"agent"}), (1, {"customer"})):
        active = _mask([t for t in rendered.turns if t.speaker in side], len(rendered.speech), rendered.sample_rate)
        speech, noise = rendered.speech[:, k], rendered.noise[:, k]
        assert _db(speech[active]) - _db(noise) == pytest.approx(10.0, abs=0.1)


def test_no_two_speakers_in_a_call_share_a_voice():
    for seed in range(24):
        for n in (2, 3, 4):
            voices = pick_voices(np.random.default_rng(seed), seed, n)
            assert len({v.name for v in voices.values()}) == n, (seed, n, voices)


def test_speaker_encoder_tells_the_four_voices_apart():
    """The voices of a four-speaker call are further apart, to the diarizer's encoder, than the
    0.91 cosine at which real different speakers sit (mb-us2 against mb-us3 measured 0.94)."""
    import warnings

    from scipy import signal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webrtcvad's pkg_resources notice
        from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder(device="cpu", verbose=False)
    for seed in (0, 1):  # the two male lineups: main voice mb-en1, and mb-us2
        rendered = render_call(seed=seed, n_speakers=4, snr_db=None)
        audio = signal.resample_poly(rendered.speech, 2, 1).astype(np.float32)  # 16 kHz for the encoder
        embeddings = {
            role: encoder.embed_utterance(np.concatenate(
                [audio[int(t.start * 16000):int(t.end * 16000)] for t in rendered.turns if t.speaker == role]))
            for role in rendered.voices
        }
        roles = list(embeddings)
        closest = max(float(embeddings[a] @ embeddings[b]) for i, a in enumerate(roles) for b in roles[i + 1:])
        assert closest < 0.88, (seed, rendered.voices, closest)


_WORD_DIGITS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine".split())}


def test_planted_identifiers_are_what_the_customer_says(tmp_path):
    call = generate_call(tmp_path, "pii", seed=7, pii=True, snr_db=None)
    planted = json.loads(call.pii_path.read_text())
    assert planted["call_id"] == "pii" and call.pii_path == tmp_path / "pii.pii.json"
    by_kind = {p["kind"]: p for p in planted["identifiers"]}
    assert set(by_kind) == {"card", "phone", "email", "dob"}
    stm = {(e.speaker, e.start, e.end): e.text for e in load_stm(call.stm_path)}
    for p in planted["identifiers"]:
        assert p["speaker"] == "customer" and stm[(p["speaker"], p["start"], p["end"])] == p["text"]
        assert identifier_leaked(p["text"], p["kind"], p["value"])
    for kind, length in (("card", 16), ("phone", 10)):
        said = "".join(_WORD_DIGITS[w] for w in by_kind[kind]["text"].lower().replace(",", "").rstrip(".").split()
                       if w in _WORD_DIGITS)
        assert said == by_kind[kind]["value"] and len(said) == length
    card = by_kind["card"]["value"]
    assert luhn_check_digit(card[:-1]) == card[-1]
    local, domain = by_kind["email"]["value"].split("@")
    assert by_kind["email"]["text"].startswith(f"It is {local.split('.')[0]} dot ")
    assert by_kind["email"]["text"].endswith(f"at {domain.replace('.', ' dot ')}.")
    year, month, day = map(int, by_kind["dob"]["value"].split("-"))
    assert 1950 <= year <= 1999 and "of " + ("January February March April May June July August September "
                                             "October November December").split()[month - 1] in by_kind["dob"]["text"]
    # Nothing of it is said in a call without planted identifiers.
    plain = generate_call(tmp_path, "plain", seed=7, snr_db=None)
    assert plain.pii_path is None and not (tmp_path / "plain.pii.json").exists()
    assert not any(identifier_leaked(e.text, p["kind"], p["value"])
                   for e in load_stm(plain.stm_path) for p in planted["identifiers"])


def test_luhn_check_digit():
    assert luhn_check_digit("7992739871") == "3"  # the textbook example
    assert luhn_check_digit("411111111111111") == "1"


def test_long_call_is_long_fast_and_streamed(tmp_path):
    import tracemalloc

    tracemalloc.start()
    started = time.perf_counter()
    call = generate_long_call(tmp_path, "long", minutes=30, seed=1)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    info = sf.info(call.audio_path)
    assert (info.channels, info.samplerate, info.subtype) == (1, 8000, "ULAW")
    assert info.duration >= 30 * 60 and info.duration == pytest.approx(call.duration_s, abs=0.01)
    # About 8 s on an idle machine; a bound for a busy one.
    assert seconds < 60
    # The whole call as float64 would be 115 MB at 8 kHz: it is written a block at a time.
    assert peak < 80 * 2 ** 20
    turns = call.turns
    assert all(a.end < b.start for a, b in zip(turns, turns[1:]))
    assert [t.speaker for t in turns[:1]] == ["agent"] and turns[-1].end <= call.duration_s
    assert "Thank you for calling" in turns[0].text and len({t.text for t in turns}) < len(turns) / 3
    start, end = call.frustrated_span
    assert 0.4 * call.duration_s < start < end < 0.7 * call.duration_s
    annotation = load_rttm(call.rttm_path)["long"]
    assert annotation.labels() == ["agent", "customer"] and annotation.get_timeline().extent().end == turns[-1].end
    assert [(e.start, e.end, e.text) for e in load_stm(call.stm_path)] == [(t.start, t.end, t.text) for t in turns]
    # The level holds from the first block to the last.
    audio, rate = sf.read(call.audio_path, start=0, stop=120 * 8000)
    tail, _ = sf.read(call.audio_path, start=info.frames - 120 * 8000)
    assert abs(_db(audio) - _db(tail)) < 3.0


def test_long_stereo_call_with_identifiers(tmp_path):
    call = generate_long_call(tmp_path, "long-st", minutes=2, seed=2, n_speakers=3, stereo=True, pii=True,
                              block_s=20.0)
    audio, rate = sf.read(call.audio_path)
    assert audio.shape[1] == 2 and call.duration_s >= 120
    for i, t in enumerate(call.turns):
        if _alone(call.turns, i) and t.end - t.start > 1.0:
            seg = audio[int(t.start * rate):int(t.end * rate)]
            own, other = (0, 1) if t.speaker == "agent" else (1, 0)
            assert _db(seg[:, own]) - _db(seg[:, other]) > 6.0, t
    planted = json.loads(call.pii_path.read_text())["identifiers"]
    assert [p["kind"] for p in planted] == ["dob", "phone", "email", "card"]  # read out once, early on
    assert all(p["end"] < 60 for p in planted)
    assert {t.speaker for t in call.turns} == {"agent", "customer", "supervisor"}
