"""Review snippets on synthetic arrays: the cut, the silenced PII spans, the Ogg/Opus encoding and
the consent and settings that withhold a snippet."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from pipeline.call.snippets import (
    cut_snippet, encode_ogg_opus, review_snippets, snippet_bounds, widened,
)
from pipeline.metadata import Consent
from pipeline.records import Flag, RedactedSpan
from pipeline.settings import SnippetSettings, load_settings

SR = 16000


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated signal at about -20 dBFS RMS: Opus codes it like speech."""
    t = np.arange(int(seconds * SR)) / SR
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 900, 1800), start=1))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    return (0.08 * voiced * syllables + noise).astype(np.float32)


def _flag(start: float, end: float, flag_id: str = "c1:SPEAKER_01:30.0") -> Flag:
    return Flag(flag_id, "SPEAKER_01", start, end, 0.8, 0.7, -0.5, 0.4, "{}")


def _decode(ogg: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(ogg)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
        return samples.astype(np.float64), stream.codec_context.sample_rate


def _dbfs(samples: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) + 1e-12)


def test_bounds_are_the_flag_padded_and_clipped_to_the_call():
    assert snippet_bounds(_flag(30.0, 40.0), 10.0, 100.0) == (20.0, 50.0)
    assert snippet_bounds(_flag(4.0, 12.0), 10.0, 100.0) == (0.0, 22.0)
    assert snippet_bounds(_flag(85.0, 97.5), 10.0, 100.0) == (75.0, 100.0)
    assert snippet_bounds(_flag(30.0, 40.0), 0.0, 100.0) == (30.0, 40.0)


def test_the_cut_silences_every_redacted_span_in_call_time_and_nothing_else():
    call = _speechlike(60.0)
    spans = [RedactedSpan(3, "card_number", 24.0, 26.5), RedactedSpan(5, "phone", 9.0, 10.5),  # the second straddles the cut
             RedactedSpan(9, "email", 50.0, 52.0)]  # outside the cut: changes nothing
    snippet = cut_snippet(call, SR, 10.0, 40.0, spans)

    assert len(snippet) == 30 * SR
    assert not snippet[14 * SR:int(16.5 * SR)].any()  # 24.0-26.5 s in the call
    assert not snippet[:int(0.5 * SR)].any()  # the straddling span's part inside the cut
    fade = int(0.01 * SR)  # silence_spans' fades lie just outside a span
    assert np.array_equal(snippet[int(0.5 * SR) + fade:14 * SR - fade], call[int(10.5 * SR) + fade:24 * SR - fade])
    assert np.array_equal(snippet[int(16.5 * SR) + fade:], call[int(26.5 * SR) + fade:40 * SR])
    assert np.abs(snippet[int(0.5 * SR) + fade:14 * SR - fade]).max() > 0.1


def test_widened_spans_take_a_margin_either_side():
    [span] = widened([RedactedSpan(1, "date_of_birth", 20.0, 21.5)], 0.5)
    assert (span.start, span.end, span.kind, span.utterance_id) == (19.5, 22.0, "date_of_birth", 1)


def test_the_encoded_snippet_is_compact_ogg_opus_with_the_spans_silent_where_speech_is_loud():
    call = _speechlike(20.0)
    spans = [RedactedSpan(0, "phone", 5.0, 7.0), RedactedSpan(1, "card_number", 12.3, 12.9)]
    ogg = encode_ogg_opus(cut_snippet(call, SR, 0.0, 20.0, spans), SR, 24000)

    assert ogg[:4] == b"OggS"
    assert len(ogg) < 20 * 32000 / 8  # well under 32 kbit/s (24 kbit/s asked, Ogg framing on top)
    decoded, rate = _decode(ogg)
    assert abs(len(decoded) / rate - 20.0) < 0.03  # Opus's pre-skip is trimmed: times line up
    for span in spans:
        assert _dbfs(decoded[int(span.start * rate):int(span.end * rate)]) < -50.0, span
    assert _dbfs(decoded[1 * rate:4 * rate]) > -30.0
    assert _dbfs(decoded[14 * rate:19 * rate]) > -30.0


@pytest.mark.parametrize("sample_rate", [8000, 22050])
def test_rates_libopus_cannot_take_are_resampled(sample_rate):
    t = np.arange(3 * sample_rate) / sample_rate
    decoded, rate = _decode(encode_ogg_opus((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), sample_rate, 16000))
    assert abs(len(decoded) / rate - 3.0) < 0.03 and _dbfs(decoded) > -20.0


def test_a_snippet_per_flag_with_its_basis():
    call = _speechlike(60.0)
    flags = [_flag(20.0, 30.0, "c1:SPEAKER_01:20.0"), _flag(50.0, 58.0, "c1:SPEAKER_01:50.0")]
    spans = [RedactedSpan(2, "phone", 12.0, 13.0), RedactedSpan(4, "email", 33.0, 34.0), RedactedSpan(7, "number", 45.0, 46.0)]
    made = review_snippets(call, SR, flags, spans, Consent(), SnippetSettings(pad_s=5.0, silence_margin_s=0.0))

    assert set(made.audio) == {"c1:SPEAKER_01:20.0", "c1:SPEAKER_01:50.0"}
    assert made.basis == {
        "c1:SPEAKER_01:20.0": "consent.voice_affect=true; 1 redacted span(s) silenced",  # 15-35 s: the email
        "c1:SPEAKER_01:50.0": "consent.voice_affect=true; 1 redacted span(s) silenced",  # 45-60 s: the number
    }
    first, rate = _decode(made.audio["c1:SPEAKER_01:20.0"])
    assert abs(len(first) / rate - 20.0) < 0.03
    assert _dbfs(first[18 * rate:19 * rate]) < -50.0 and _dbfs(first[2 * rate:10 * rate]) > -30.0


def test_the_margin_silences_past_the_redacted_words():
    call = _speechlike(30.0)
    span = RedactedSpan(0, "date_of_birth", 10.0, 11.0)
    made = review_snippets(call, SR, [_flag(8.0, 14.0)], [span], Consent(), SnippetSettings(pad_s=2.0, silence_margin_s=0.5))
    decoded, rate = _decode(made.audio["c1:SPEAKER_01:30.0"])  # 6.0-16.0 s of the call
    assert _dbfs(decoded[int(3.5 * rate):int(5.5 * rate)]) < -50.0  # 9.5-11.5 s
    assert _dbfs(decoded[int(1.0 * rate):int(3.0 * rate)]) > -30.0


@pytest.mark.parametrize("consent, settings, why", [
    (Consent(voice_affect=False), SnippetSettings(), "consent.voice_affect=false"),
    (Consent(), SnippetSettings(enabled=False), "snippets.enabled=false"),
    (Consent(voice_affect=False), SnippetSettings(enabled=False), "consent.voice_affect=false"),
])
def test_no_snippet_without_voice_consent_or_when_turned_off(consent, settings, why):
    flags = [_flag(20.0, 30.0, "a"), _flag(40.0, 50.0, "b")]
    withheld = review_snippets(_speechlike(60.0), SR, flags, [], consent, settings)
    assert withheld.audio == {} and withheld.basis == {"a": why, "b": why}


@pytest.mark.parametrize("name, value", [("PAD_S", "-1"), ("BITRATE", "5000"), ("BITRATE", "600000"),
                                         ("SILENCE_MARGIN_S", "-0.1")])
def test_impossible_snippet_settings_fail_at_load_naming_the_setting(name, value):
    with pytest.raises(ValueError, match=f"snippets.{name.lower()}"):
        load_settings(env={f"CALLAFFECT_SNIPPETS__{name}": value})
    assert load_settings(env={"CALLAFFECT_SNIPPETS__PAD_S": "4.5"}).snippets.pad_s == 4.5
