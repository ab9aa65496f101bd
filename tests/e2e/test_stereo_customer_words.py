"""The customer's words on stereo 8 kHz calls, the customer's channel quieter than the agent's.

On one party's channel the line is silent (noise only) for as long as the other party talks.
silero-vad run over such a channel in one pass drifts during those silences and misses the
next turn whole; Whisper never hears it. The speech-activity stage restarts silero's state as
it goes on one party's channel. There, too, transcription drops no window as silence (the
no-speech rule can throw away 30 s of speech at once) and faster-whisper decodes each window
once (its second decode of a window's tail made up "Thank you." about once per window).

The measure is the one the evaluation uses (bench/eval_quality.py): the truth's customer lines
against the cues ``transcript.vtt`` tags ``(customer)``, and as the baseline Whisper (the same
model) run plainly on the customer's channel alone.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
from pyannote.core import Segment, Timeline

from pipeline.call.analyze import analyze_call
from pipeline.storage.media import decode_audio
from pipeline.settings import Settings, VadSettings
from pipeline.stages.audio import speech_activity
from pipeline.devtools.synth.calls import generate_call

EVAL_QUALITY = Path(__file__).resolve().parents[2] / "bench" / "eval_quality.py"
# The end-to-end call: a single silero pass over its customer's channel covers 79 % of the
# customer's speech and misses 3 of 13 turns; restarted as it goes, 96 % and none.
SEED, SNR_DB, CUSTOMER_GAIN_DB = 9, 20.0, -5.0


def _eval_quality():
    """bench/eval_quality.py (not a package), loaded inside a test: it silences warnings on import."""
    spec = importlib.util.spec_from_file_location("eval_quality", EVAL_QUALITY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _covered(turn, speech: Timeline) -> float:
    return Timeline([Segment(turn.start, turn.end)]).crop(speech, mode="intersection").duration()


def test_customer_turns_after_the_agent_talked_are_found(tmp_path):
    """Seed 4, customer 10 dB quieter: a single silero pass over the customer's channel covers
    about 74 % of the customer's speech and misses 3 of 11 turns (each one said after the agent
    talked for several seconds); restarted as it goes, it covers about 98 % and misses none."""
    call = generate_call(tmp_path, "quiet-customer", seed=4, stereo=True, telephone=True, snr_db=20.0,
                         customer_gain_db=-10.0)
    audio = decode_audio(call.audio_path)
    customer = [t for t in call.turns if t.speaker == "customer"]
    speech = speech_activity.detect_speech(audio.channels[1], audio.sample_rate, VadSettings(), one_party=True)
    single = speech_activity.detect_speech(audio.channels[1], audio.sample_rate, VadSettings())
    said = sum(t.end - t.start for t in customer)
    coverage = {name: sum(_covered(t, tl) for t in customer) / said for name, tl in (("restarted", speech), ("single", single))}
    missed = [t.text for t in customer if _covered(t, speech) < 0.5 * (t.end - t.start)]
    assert missed == [] and coverage["restarted"] >= 0.95, (missed, coverage)
    # The agent's channel: the same, with no more than a little extra outside the agent's turns.
    agent = Timeline([Segment(t.start, t.end) for t in call.turns if t.speaker == "agent"]).support()
    agent_speech = speech_activity.detect_speech(audio.channels[0], audio.sample_rate, VadSettings(), one_party=True)
    assert agent_speech.crop(agent, mode="intersection").duration() >= 0.95 * agent.duration()
    assert agent_speech.duration() - agent_speech.crop(agent, mode="intersection").duration() <= 0.15 * agent.duration()


def test_restarted_vad_on_empty_silent_and_8khz_audio():
    for n in (0, 100, 3 * 16000):
        assert list(speech_activity.detect_speech(np.zeros(n, np.float32), 16000, VadSettings(), one_party=True)) == []
    assert list(speech_activity.detect_speech(np.zeros(8000, np.float32), 8000, VadSettings(), one_party=True)) == []


def test_customer_words_are_no_worse_than_plain_whisper_on_the_customer_channel(tmp_path):
    """One generated stereo 8 kHz call, the customer 5 dB quieter than the agent, through
    `analyze_call`: the customer's WER is no worse than Whisper's on the customer's channel."""
    started = time.perf_counter()
    settings = Settings()
    call = generate_call(tmp_path, "quiet-customer", seed=SEED, stereo=True, telephone=True, snr_db=SNR_DB,
                         customer_gain_db=CUSTOMER_GAIN_DB)
    result = analyze_call(call.audio_path, call.call_id, settings=settings)
    assert result.ok and result.tables["calls"].column("channel_layout").to_pylist() == ["stereo"]
    vtt = tmp_path / "transcript.vtt"
    vtt.write_text(result.vtt)

    evaluation = _eval_quality()
    agent = evaluation.role_wer(call.stm_path, vtt, "agent")
    customer = evaluation.role_wer(call.stm_path, vtt, "customer")
    plain = evaluation.plain_whisper_wer(call.audio_path, call.stm_path, 1, "customer", settings)
    assert customer.ref_words > 80 and plain.ref_words == customer.ref_words
    assert customer.wer <= plain.wer, (customer, plain)
    # Sane bounds: the words are there and given to the right party.
    assert customer.wer < 0.4 and agent.wer < 0.4, (agent, customer)
    assert customer.deletions <= 0.1 * customer.ref_words, customer
    assert time.perf_counter() - started < 120
