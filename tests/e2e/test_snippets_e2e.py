"""Review snippets from the real analyze_call on a generated call whose customer reads out a date
of birth, a phone number, an e-mail address and a card number: every redacted span is silent in
the Ogg/Opus a reviewer hears, and without voice consent there is no snippet, only an audit row."""

from __future__ import annotations

import dataclasses
import io
import json

import av
import numpy as np
import pytest

from pipeline.call import snippets
from pipeline.call.analyze import analyze_call
from pipeline.devtools.synth.calls import generate_call
from pipeline.settings import Settings, SnippetSettings

SILENT_DBFS = -50.0


@pytest.fixture(scope="module")
def pii_call(tmp_path_factory):
    """Stereo (the snippet is cut from the mono mix of both parties), all four identifiers planted."""
    return generate_call(tmp_path_factory.mktemp("snippets"), "pii3", seed=3, n_speakers=2, snr_db=20.0,
                         stereo=True, pii=True)


def _analyze(call, monkeypatch, settings: Settings, metadata: dict | None = None):
    """analyze_call, and what its snippet step was given (flags, redacted spans)."""
    given = {}

    def recording(samples, sample_rate, flags, redacted, consent, snippet_settings):
        given.update(flags=flags, redacted=redacted, duration_s=len(samples) / sample_rate)
        return snippets.review_snippets(samples, sample_rate, flags, redacted, consent, snippet_settings)

    monkeypatch.setattr(snippets, "STAGE", dataclasses.replace(snippets.STAGE, run=recording))
    result = analyze_call(call.audio_path, call.call_id, settings=settings, call_date="2024-05-01", metadata=metadata)
    assert result.ok, result.manifest.reason
    return result, given


def _decode(ogg: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(ogg)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
        return samples.astype(np.float64), stream.codec_context.sample_rate


def _dbfs(samples: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(np.square(samples))) + 1e-12)


def test_every_redacted_span_is_silent_in_the_snippet(pii_call, monkeypatch):
    # A pad longer than the call: the snippet is the whole call, so every identifier is in it.
    settings = dataclasses.replace(Settings(), snippets=SnippetSettings(pad_s=600.0))
    result, given = _analyze(pii_call, monkeypatch, settings)
    planted = json.loads(pii_call.pii_path.read_text())["identifiers"]
    spans = given["redacted"]
    identifiers = [s for s in spans if s.kind != "name"]  # names are said in turns of their own
    assert len(identifiers) >= len(planted) and given["flags"]
    # Each redacted identifier lies in the customer turn that read it out.
    assert all(any(p["start"] - 0.5 <= s.start and s.end <= p["end"] + 0.5 for p in planted) for s in identifiers)

    flag_id = given["flags"][0].flag_id
    audio, rate = _decode(result.snippets[flag_id])
    assert abs(len(audio) / rate - given["duration_s"]) < 0.05
    margin = settings.snippets.silence_margin_s
    # With the margin either side: an identifier's sound runs past its words' ASR times.
    silenced = [_dbfs(audio[int((s.start - margin) * rate):int((s.end + margin) * rate)]) for s in spans]
    assert max(silenced) < SILENT_DBFS, silenced
    # The speech around them is the call's, far above: the flagged stretch, and the whole call.
    flagged = given["flags"][0]
    speech = _dbfs(audio[int(flagged.start * rate):int(flagged.end * rate)])
    assert speech > SILENT_DBFS + 10 and speech - max(silenced) > 40, (speech, silenced)

    keys = {f["flag_id"]: f["snippet_key"] for f in result.tables["qa_flags"].to_pylist()}
    assert keys[flag_id] == f"snippets/date=2024-05-01/call_id=pii3/{flag_id}.ogg"
    audit = [a for a in result.tables["audit"].to_pylist() if a["inference"] == "review_snippet"]
    assert {a["subject"] for a in audit} == set(keys) and all(a["performed"] for a in audit)


def test_a_default_snippet_is_the_flag_padded_by_ten_seconds(pii_call, monkeypatch):
    result, given = _analyze(pii_call, monkeypatch, Settings())
    assert set(result.snippets) == {f.flag_id for f in given["flags"]}
    for flag in given["flags"]:
        start, end = max(0.0, flag.start - 10.0), min(given["duration_s"], flag.end + 10.0)
        audio, rate = _decode(result.snippets[flag.flag_id])
        assert abs(len(audio) / rate - (end - start)) < 0.05
        assert _dbfs(audio) > SILENT_DBFS + 10
        assert len(result.snippets[flag.flag_id]) < (end - start) * 32000 / 8  # Opus at 24 kbit/s asked


def test_no_voice_consent_no_snippet_and_the_audit_says_why(pii_call, monkeypatch):
    result, given = _analyze(pii_call, monkeypatch, Settings(), metadata={"consent": {"voice_affect": False}})
    assert given["flags"] and result.snippets == {}
    assert {f["snippet_key"] for f in result.tables["qa_flags"].to_pylist()} == {None}
    audit = [a for a in result.tables["audit"].to_pylist() if a["inference"] == "review_snippet"]
    assert [(a["subject"], a["performed"], a["basis"], a["model"]) for a in audit] == [
        (f.flag_id, False, "consent.voice_affect=false", None) for f in given["flags"]
    ]
