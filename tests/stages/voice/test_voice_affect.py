"""Voice features and arousal: both backends, chunked extraction, the BS.1770 loudness and pYIN
pitch of the default, the backend setting, and agreement with openSMILE on a generated call."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pipeline.settings import Settings, VoiceSettings, load_settings
from pipeline.stages.voice import bs1770_pyin, voice_affect

SR = 16000
BACKENDS = ("bs1770-pyin", "opensmile-egemaps")


def _voice_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    gate = np.repeat(rng.random(int(seconds * 4) + 1) > 0.3, SR // 4)[: len(t)]  # 250 ms on/off
    return (0.3 * np.sin(2 * np.pi * (150 + 30 * np.sin(t)) * t) * gate + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _harmonic(f0: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amplitude * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_voice_frames_in_chunks_equal_one_pass(backend):
    x = _voice_like(16.0)
    whole = voice_affect.extract_frames(x, SR, VoiceSettings(backend), chunk_s=1e9)
    chunked = voice_affect.extract_frames(x, SR, VoiceSettings(backend), chunk_s=5.0)
    assert len(chunked.loudness) == len(whole.loudness) == len(whole.f0_semitones)
    assert np.allclose(chunked.loudness, whole.loudness, rtol=1e-4)
    # pYIN's Viterbi path sees a second of context either side of a cut: it may differ only there.
    differ = ~np.isclose(chunked.f0_semitones, whole.f0_semitones, atol=1e-3)
    assert differ.mean() <= 0.01, differ.mean()


def test_k_weighting_is_the_standards_filter_at_48_khz():
    # ITU-R BS.1770-4, tables 1 and 2: the pre-filter (shelf) and the RLB high-pass at 48 kHz.
    shelf = [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585]
    rlb = [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]
    assert np.allclose(bs1770_pyin.k_weighting(48000), [shelf, rlb], atol=1e-9)


def test_loudness_reads_the_bs1770_level_of_a_tone_and_doubles_per_10_lu():
    t = np.arange(SR * 2) / SR
    tone = np.sin(2 * np.pi * 997 * t)
    steady = slice(50, -50)  # away from the filter's start-up and the padded edges
    full = bs1770_pyin.loudness(tone, SR)[steady]
    # BS.1770: a full-scale 997 Hz sine in one channel reads -3.01 LKFS (to 0.1 LU, as EBU
    # Tech 3341 asks of a meter; the 25 ms frame holds no whole number of periods).
    assert np.allclose(10 * np.log2(full), -3.01, atol=0.1)
    quieter = bs1770_pyin.loudness(tone * 10 ** (-10 / 20), SR)[steady]
    assert np.allclose(full / quieter, 2.0, rtol=0.01)
    assert bs1770_pyin.loudness(np.zeros(SR, dtype=np.float32), SR).max() < 1e-2


def test_pitch_of_a_voiced_tone_and_silence_as_unvoiced():
    x = np.concatenate([_harmonic(200.0, 1.0), np.zeros(SR, dtype=np.float32)])
    st = bs1770_pyin.f0_semitones(x, SR)
    voiced, silent = st[10:90], st[110:190]
    assert (voiced > 0).mean() > 0.95 and abs(np.median(voiced) - 12 * np.log2(200 / 27.5)) < 0.3
    assert (silent == 0).all()
    # Telephone-like noise at 10 dB SNR keeps the tone voiced (the Beta(2, 8) threshold prior).
    rng = np.random.default_rng(1)
    tone = _harmonic(140.0, 1.0)
    noisy = tone + rng.standard_normal(len(tone)).astype(np.float32) * np.sqrt(np.mean(tone**2) / 10)
    assert (bs1770_pyin.f0_semitones(noisy, SR)[10:90] > 0).mean() > 0.8


def test_the_backend_setting_is_validated_and_chosen_by_the_environment():
    assert Settings().voice.backend == "bs1770-pyin"
    with pytest.raises(ValueError, match="voice.backend: unknown backend 'praat'"):
        VoiceSettings(backend="praat")
    with pytest.raises(ValueError, match="voice.backend"):
        load_settings(env={"CALLAFFECT_VOICE__BACKEND": "praat"})
    chosen = load_settings(env={"CALLAFFECT_VOICE__BACKEND": "opensmile-egemaps"})
    assert chosen.voice.backend == "opensmile-egemaps" and chosen.fingerprint() != Settings().fingerprint()


@pytest.mark.parametrize("backend, version", [("bs1770-pyin", "pyloudnorm=="), ("opensmile-egemaps", "opensmile==")])
def test_stage_backend_and_model_version_follow_the_setting(backend, version):
    settings = dataclasses.replace(Settings(), voice=VoiceSettings(backend))
    for stage in (voice_affect.FEATURES_STAGE, voice_affect.STAGE):
        assert stage.info(settings).backend == backend
        assert version in stage.model_version(settings)


@pytest.fixture(scope="module")
def generated_call(tmp_path_factory):
    from pipeline.devtools.evaluation import load_rttm
    from pipeline.devtools.synth.calls import generate_call
    from pipeline.storage.media import decode_audio

    call = generate_call(tmp_path_factory.mktemp("voice"), "voice0", seed=100, n_speakers=2, snr_db=20.0, telephone=True)
    return call, decode_audio(call.audio_path, sample_rate=SR).samples, load_rttm(call.rttm_path)["voice0"]


def test_both_backends_agree_and_find_the_frustrated_stretch(generated_call):
    """The comparison on one generated call, with the true turns: per-window arousal of the
    default correlates with openSMILE's, and both read the customer's scripted frustrated
    stretch as more aroused than the rest of the call (bench/voice_cues_compare.py measures
    the whole test set)."""
    from scipy import stats

    from pipeline.settings import AffectSettings
    from pipeline.stages.fusion import speaker_windows

    call, samples, turns = generated_call
    windows = speaker_windows(turns, AffectSettings())
    scores = {b: voice_affect.score_windows(voice_affect.extract_frames(samples, SR, VoiceSettings(b)), turns, windows)
              for b in BACKENDS}
    both = [(a.arousal, b.arousal) for a, b in zip(*scores.values()) if a.arousal is not None and b.arousal is not None]
    assert len(both) >= 15
    assert stats.spearmanr(*np.array(both).T).statistic > 0.4
    start, end = call.frustrated_span
    for backend, values in scores.items():
        customer = [(w, s.arousal) for w, s in zip(windows, values) if w.speaker == "customer" and s.arousal is not None]
        inside = [a for w, a in customer if w.start < end and w.end > start]
        outside = [a for w, a in customer if w.end <= start or w.start >= end]
        assert np.mean(inside) > np.mean(outside) + 0.2, backend


def test_the_default_never_imports_opensmile(generated_call, tmp_path):
    """The default profile's voice path, and everything the one-call path and the CLI import,
    with openSMILE's import blocked in a fresh interpreter."""
    call, _, _ = generated_call
    script = textwrap.dedent(f"""
        import sys
        sys.modules["opensmile"] = None  # any `import opensmile` now raises ImportError
        from pipeline import cli  # noqa: F401  (the entry points and all they import)
        from pipeline.call.analyze import _versions
        from pipeline.devtools.evaluation import load_rttm
        from pipeline.settings import Settings
        from pipeline.stages.fusion import speaker_windows
        from pipeline.stages.voice import voice_affect
        from pipeline.storage.media import decode_audio

        settings = Settings()
        audio = decode_audio({str(call.audio_path)!r}, sample_rate=16000)
        turns = load_rttm({str(call.rttm_path)!r})["voice0"]
        frames = voice_affect.FEATURES_STAGE.run(audio.samples, audio.sample_rate, settings.voice)
        scores = voice_affect.STAGE.run(frames, turns, speaker_windows(turns, settings.affect))
        assert sum(s.arousal is not None for s in scores) >= 10
        assert _versions(settings, None)["voice_affect"].startswith("bs1770-pyin")
        try:
            voice_affect.extract_frames(audio.samples[:16000], 16000, settings.voice.__class__("opensmile-egemaps"))
        except ImportError:
            print("opensmile blocked")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "opensmile blocked"  # the block works: the opt-in backend needs it
