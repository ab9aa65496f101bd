"""Review snippets: each flag's audio, cut at analysis time, because retention deletes raw media.

A snippet is the flagged span +- ``snippets.pad_s``, clipped to the call, from the decoded mono
mix, with every redacted PII span of the call silenced (widened by ``snippets.silence_margin_s``),
encoded as Ogg/Opus. Snippets are made only with the call's voice consent (a snippet is the
speakers' voices) and ``snippets.enabled``; never from video. Every flag's snippet, made or
withheld, has a basis for the audit.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import av
import numpy as np

from pipeline.metadata import Consent
from pipeline.records import Flag, RedactedSpan
from pipeline.settings import SnippetSettings
from pipeline.stages import contract
from pipeline.stages.text.redaction import silence_spans

ENCODER = "libopus"
# The rates libopus encodes at; other analysis rates are resampled up to the next one.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


@dataclass(frozen=True)
class ReviewSnippets:
    """The call's snippets and, per flag, why its snippet was made or withheld."""

    audio: dict[str, bytes]  # flag id -> Ogg/Opus; a flag without a snippet is absent
    basis: dict[str, str]  # flag id -> consent and settings behind it, for the audit


def snippet_bounds(flag: Flag, pad_s: float, duration_s: float) -> tuple[float, float]:
    """The snippet's (start, end) in call time: the flag +- pad_s, clipped to the call."""
    return max(0.0, flag.start - pad_s), min(duration_s, flag.end + pad_s)


def widened(spans: list[RedactedSpan], margin_s: float) -> list[RedactedSpan]:
    """The spans with margin_s added either side: ASR word times are approximate, and on the
    generated calls a spoken identifier ran on up to ~0.3 s past its redacted words' end."""
    return [dataclasses.replace(s, start=s.start - margin_s, end=s.end + margin_s) for s in spans]


def cut_snippet(samples: np.ndarray, sample_rate: int, start_s: float, end_s: float,
                silenced: list[RedactedSpan]) -> np.ndarray:
    """The mono samples of [start_s, end_s) with the ``silenced`` spans (call times) zeroed."""
    first, last = int(round(start_s * sample_rate)), int(round(end_s * sample_rate))
    offset = first / sample_rate
    # silence_spans clips spans to the cut, so spans outside it change nothing.
    local = [dataclasses.replace(s, start=s.start - offset, end=s.end - offset) for s in silenced]
    return silence_spans(samples[first:last], sample_rate, local)


def encode_ogg_opus(samples: np.ndarray, sample_rate: int, bitrate: int) -> bytes:
    """Mono float samples in [-1, 1] as an Ogg/Opus file (speech: 16-24 kbit/s is plenty)."""
    rate = next((r for r in OPUS_RATES if r >= sample_rate), OPUS_RATES[-1])
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream(ENCODER, rate=rate)
        stream.layout = "mono"
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.asarray(samples, dtype=np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        # PyAV resamples to the encoder's rate and format and cuts Opus's fixed-size frames.
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def withheld_because(consent: Consent, settings: SnippetSettings) -> str | None:
    """Why no snippet may be made for this call, or None when snippets may be made."""
    if not consent.voice_affect:
        return "consent.voice_affect=false"
    if not settings.enabled:
        return "snippets.enabled=false"
    return None


def review_snippets(samples: np.ndarray, sample_rate: int, flags: list[Flag], redacted: list[RedactedSpan],
                    consent: Consent, settings: SnippetSettings) -> ReviewSnippets:
    """A snippet per flag from the call's mono mix, or none and why (consent, settings)."""
    withheld = withheld_because(consent, settings)
    if withheld:
        return ReviewSnippets(audio={}, basis={f.flag_id: withheld for f in flags})
    duration_s = len(samples) / sample_rate
    silenced = widened(redacted, settings.silence_margin_s)
    audio, basis = {}, {}
    for flag in flags:
        start, end = snippet_bounds(flag, settings.pad_s, duration_s)
        inside = sum(1 for s in silenced if s.start < end and s.end > start)
        audio[flag.flag_id] = encode_ogg_opus(cut_snippet(samples, sample_rate, start, end, silenced),
                                              sample_rate, settings.bitrate)
        basis[flag.flag_id] = f"consent.voice_affect=true; {inside} redacted span(s) silenced"
    return ReviewSnippets(audio=audio, basis=basis)


STAGE = contract.Stage("review_snippets", backend=contract.fixed("pyav-libopus"), run=review_snippets)
