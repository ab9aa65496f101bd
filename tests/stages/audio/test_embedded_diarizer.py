"""The embedded diarizer's parts: clustering, smoothing, chunked mel frames."""

from __future__ import annotations

import numpy as np

from pipeline.settings import DiarizationSettings
from pipeline.stages.audio import embedded_diarizer
from pipeline.records import SpeakerHints


def test_clustering_counts_speakers_on_separable_embeddings():
    rng = np.random.default_rng(0)
    base = rng.normal(size=256)  # a shared "channel" direction, as on one phone line
    settings = DiarizationSettings()
    for k in (1, 2, 3, 4):
        centres = [base + 0.6 * rng.normal(size=256) for _ in range(k)]
        x = np.concatenate([c + 0.15 * rng.normal(size=(25, 256)) for c in centres])
        labels = embedded_diarizer.cluster_embeddings(x.astype(np.float32), settings)
        assert len(set(labels)) == k, k
    # A hint caps the count.
    labels = embedded_diarizer.cluster_embeddings(x.astype(np.float32), settings, SpeakerHints(max_speakers=2))
    assert len(set(labels)) == 2


def test_smoothing_absorbs_short_runs():
    labels = np.array([0] * 50 + [1] * 5 + [0] * 50 + [1] * 60)
    out = embedded_diarizer._smooth(labels, 30)
    assert out[:105].tolist() == [0] * 105 and out[105:].tolist() == [1] * 60


def test_chunked_mel_frames_equal_resemblyzer_whole_signal():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000 * 7 + 123)).astype(np.float32)
    whole = embedded_diarizer._import_resemblyzer().audio.wav_to_mel_spectrogram(x)
    chunked = embedded_diarizer._mel_frames(x, chunk_frames=97)  # many chunk borders
    assert chunked.shape == whole.shape
    assert np.abs(chunked - whole).max() <= 1e-5 * np.abs(whole).max()
