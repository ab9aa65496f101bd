"""Voice features: eGeMAPS frames computed in chunks equal one pass over the whole call."""

from __future__ import annotations

import numpy as np


def test_voice_frames_in_chunks_equal_one_pass():
    from pipeline.stages.voice import voice_affect

    rng = np.random.default_rng(0)
    t = np.arange(16000 * 25) / 16000
    x = (0.3 * np.sin(2 * np.pi * (150 + 30 * np.sin(t)) * t) * (rng.random(len(t)) > 0.2) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    whole = voice_affect.extract_frames(x, 16000, chunk_s=1e9)
    chunked = voice_affect.extract_frames(x, 16000, chunk_s=7.0)
    assert len(chunked.loudness) == len(whole.loudness)
    assert np.allclose(chunked.loudness, whole.loudness) and np.allclose(chunked.f0_semitones, whole.f0_semitones)
