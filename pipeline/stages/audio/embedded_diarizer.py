"""The embedded diarization backend: audio + speech regions -> speaker turns (pyannote.core.Annotation).

Resemblyzer's bundled speaker encoder over sliding windows inside speech,
then clustering with the number of speakers estimated by silhouette. Embeddings are
mean-centred per call before clustering: the encoder puts every voice of a call (same channel,
same codec) in a narrow cone, and without centring the channel dominates cosine similarity.
"""

from __future__ import annotations

import functools

import numpy as np
from pyannote.core import Annotation, Segment, Timeline

from pipeline.settings import DiarizationSettings
from pipeline.records import SpeakerHints

_FRAME_S = 0.01  # Resemblyzer's mel hop (10 ms)
_PARTIAL_FRAMES = 160  # the encoder's training window (1.6 s)


def _import_resemblyzer():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation notice
        import resemblyzer

    return resemblyzer


@functools.lru_cache(maxsize=1)
def _encoder():
    return _import_resemblyzer().VoiceEncoder(device="cpu", verbose=False)


def model_version() -> str:
    from importlib.metadata import version

    return f"resemblyzer=={version('resemblyzer')}"


def _mel_frames(samples: np.ndarray, chunk_frames: int = 30_000) -> np.ndarray:
    """Resemblyzer's mel frames (10 ms hop, centred 25 ms windows), computed in 5-minute chunks.

    Same frames as ``resemblyzer.audio.wav_to_mel_spectrogram`` on the whole signal, but the
    STFT of an hour-long call never sits in memory at once (it would take ~600 MB).
    """
    import librosa

    hp = _import_resemblyzer().hparams
    hop = int(hp.sampling_rate * hp.mel_window_step / 1000)
    n_fft = int(hp.sampling_rate * hp.mel_window_length / 1000)
    n_frames = 1 + len(samples) // hop
    out = np.empty((n_frames, hp.mel_n_channels), dtype=np.float32)
    for k0 in range(0, n_frames, chunk_frames):
        k1 = min(n_frames, k0 + chunk_frames)
        # Frame k is centred on sample k * hop; zero padding beyond the signal, as librosa does.
        a, b = k0 * hop - n_fft // 2, (k1 - 1) * hop + n_fft // 2 + n_fft % 2
        y = samples[max(0, a) : min(len(samples), b)]
        y = np.pad(y, (max(0, -a), max(0, b - len(samples))))
        mel = librosa.feature.melspectrogram(
            y=y, sr=hp.sampling_rate, n_fft=n_fft, hop_length=hop, n_mels=hp.mel_n_channels, center=False
        )
        out[k0:k1] = mel.T[: k1 - k0]
    return out


def _windows(speech: Timeline, n_frames: int, hop_frames: int) -> list[tuple[int, int, int]]:
    """(region index, start frame, end frame) windows covering each speech region.

    A region shorter than the encoder window gets one window centred on it, borrowing context:
    short answers ("yes", "okay") are where diarization most often goes wrong.
    """
    out = []
    for index, seg in enumerate(speech):
        first, last = int(seg.start / _FRAME_S), int(seg.end / _FRAME_S)
        if last - first <= _PARTIAL_FRAMES:
            centre = (first + last) // 2
            start = min(max(0, centre - _PARTIAL_FRAMES // 2), max(0, n_frames - _PARTIAL_FRAMES))
            out.append((index, start, min(n_frames, start + _PARTIAL_FRAMES)))
            continue
        starts = list(range(first, last - _PARTIAL_FRAMES + 1, hop_frames))
        if starts[-1] + _PARTIAL_FRAMES < last:
            starts.append(last - _PARTIAL_FRAMES)
        out.extend((index, s, s + _PARTIAL_FRAMES) for s in starts)
    return out


def embed_windows(mels: np.ndarray, windows: list[tuple[int, int, int]], batch: int = 256) -> np.ndarray:
    import torch

    encoder = _encoder()
    embeddings = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            chunk = []
            for _, s, e in windows[i : i + batch]:
                m = mels[s:e]
                if len(m) < _PARTIAL_FRAMES:  # only at the very end of a short file
                    m = np.pad(m, ((0, _PARTIAL_FRAMES - len(m)), (0, 0)))
                chunk.append(m)
            embeddings.append(encoder(torch.from_numpy(np.stack(chunk))).numpy())
    return np.concatenate(embeddings) if embeddings else np.zeros((0, 256), np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def cluster_embeddings(
    embeddings: np.ndarray, settings: DiarizationSettings, hints: SpeakerHints = SpeakerHints()
) -> np.ndarray:
    """Cluster labels per window, number of clusters estimated (penalised silhouette over k)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    max_k = min(hints.max_speakers or settings.max_speakers, settings.max_speakers, n)
    min_k = max(1, min(hints.min_speakers, max_k))
    if n < 2 or max_k < 2:
        return np.zeros(n, dtype=int)
    x = _normalise(embeddings - embeddings.mean(axis=0, keepdims=True))

    best_k, best_score, best_labels = 1, -1.0, np.zeros(n, dtype=int)
    for k in range(max(2, min_k), max_k + 1):
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
        labels = _refine(x, labels)
        if len(set(labels)) < 2:
            continue
        # Parsimony: each speaker beyond two must earn its place. Support calls are mostly two
        # parties, and on real telephone audio silhouette alone keeps splitting one voice.
        score = silhouette_score(x, labels, metric="cosine") - settings.extra_speaker_penalty * max(0, k - 2)
        if score > best_score:
            best_k, best_score, best_labels = k, score, labels
    if min_k <= 1 and best_score < settings.single_speaker_silhouette:
        return np.zeros(n, dtype=int)
    return best_labels if best_k > 1 else np.zeros(n, dtype=int)


def _refine(x: np.ndarray, labels: np.ndarray, iterations: int = 5, min_share: float = 0.03) -> np.ndarray:
    """A few spherical k-means steps from the agglomerative start; tiny clusters are dissolved.

    Dissolving clusters below ``min_share`` of the windows stops a few noisy windows (a cough,
    crosstalk) from counting as an extra speaker.
    """
    for _ in range(iterations):
        keep = [c for c in np.unique(labels) if (labels == c).mean() >= min_share]
        if not keep:
            break
        centroids = _normalise(np.stack([x[labels == c].mean(axis=0) for c in keep]))
        new = np.asarray(keep)[np.argmax(x @ centroids.T, axis=1)]
        if np.array_equal(new, labels):
            break
        labels = new
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def _turns_from_windows(
    speech: Timeline,
    windows: list[tuple[int, int, int]],
    labels: np.ndarray,
    x: np.ndarray,
    settings: DiarizationSettings,
) -> Annotation:
    """Frame-level voting of the windows' cluster similarities, restricted to speech."""
    n_clusters = int(labels.max()) + 1
    centroids = _normalise(np.stack([x[labels == c].mean(axis=0) for c in range(n_clusters)]))
    similarity = x @ centroids.T  # (windows, clusters)
    annotation = Annotation()
    by_region: dict[int, list[int]] = {}
    for w, (region, _, _) in enumerate(windows):
        by_region.setdefault(region, []).append(w)
    for region_index, seg in enumerate(speech):
        ws = by_region.get(region_index, [])
        if not ws:
            continue
        first, last = int(seg.start / _FRAME_S), max(int(seg.end / _FRAME_S), int(seg.start / _FRAME_S) + 1)
        votes = np.zeros((last - first, n_clusters))
        for w in ws:
            _, s, e = windows[w]
            lo, hi = max(s, first) - first, min(e, last) - first
            if hi > lo:
                votes[lo:hi] += similarity[w]
        uncovered = votes.sum(axis=1) == 0
        votes[uncovered] = similarity[ws].mean(axis=0)
        frame_labels = _smooth(np.argmax(votes, axis=1), int(settings.min_turn_s / _FRAME_S))
        change = np.flatnonzero(np.diff(frame_labels)) + 1
        bounds = [0, *change.tolist(), len(frame_labels)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            start = seg.start + a * _FRAME_S
            end = min(seg.end, seg.start + b * _FRAME_S)
            if end > start:
                annotation[Segment(start, end)] = int(frame_labels[a])
    return annotation


def _smooth(labels: np.ndarray, min_run: int) -> np.ndarray:
    """Absorb runs shorter than ``min_run`` frames into the longer neighbour."""
    labels = labels.copy()
    changed = True
    while changed and len(labels):
        changed = False
        change = np.flatnonzero(np.diff(labels)) + 1
        bounds = [0, *change.tolist(), len(labels)]
        runs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        if len(runs) < 2:
            break
        shortest = min(range(len(runs)), key=lambda i: runs[i][1] - runs[i][0])
        a, b = runs[shortest]
        if b - a >= min_run:
            break
        left = runs[shortest - 1] if shortest > 0 else None
        right = runs[shortest + 1] if shortest + 1 < len(runs) else None
        neighbour = max((r for r in (left, right) if r), key=lambda r: r[1] - r[0])
        labels[a:b] = labels[neighbour[0]]
        changed = True
    return labels


def diarize(
    samples: np.ndarray,
    sample_rate: int,
    speech: Timeline,
    settings: DiarizationSettings,
    hints: SpeakerHints = SpeakerHints(),
) -> Annotation:
    """Speaker turns labelled SPEAKER_00, SPEAKER_01, ... in order of first appearance."""
    if sample_rate != 16000:
        raise ValueError("the embedded diarizer takes 16 kHz audio")
    if not len(speech):
        return Annotation()
    mels = _mel_frames(samples)
    hop_frames = max(1, int(settings.hop_s / _FRAME_S))
    windows = _windows(speech, len(mels), hop_frames)
    embeddings = embed_windows(mels, windows)
    labels = cluster_embeddings(embeddings, settings, hints)
    x = _normalise(embeddings - embeddings.mean(axis=0, keepdims=True)) if labels.max() > 0 else _normalise(embeddings)
    raw = _turns_from_windows(speech, windows, labels, x, settings)
    return rename_by_first_appearance(raw.support(collar=0.0))


def rename_by_first_appearance(annotation: Annotation) -> Annotation:
    """Labels SPEAKER_00, SPEAKER_01, ... in order of first appearance (both backends)."""
    order: dict = {}
    for segment, _, label in annotation.itertracks(yield_label=True):
        order.setdefault(label, f"SPEAKER_{len(order):02d}")
    return annotation.rename_labels(mapping=order)
