"""The face branch of one call: sampled frames -> faces -> tracks -> speakers, and expressions.

One streaming pass over the video (``stages.video_frames``): faces are found by MTCNN's full
cascade every ``detect_every_s`` and followed by its last net (O-Net) on the frames between,
faces are linked into tracks, and every face that passes the quality gate gives a
mouth patch (for lip motion) and a 64x64 crop for the light expression model, run in batches.
Nothing per frame outlives the pass except a few floats per usable face (time, valence,
arousal, confidence, class probabilities), so memory grows by bytes, not images, with length.
When a heavy clip model (MAE-DFER) is configured, each track keeps its last 16 face crops and,
at most every ``clip_every_s`` and only where the light model reads arousal, hands a clip to it.

After the pass, tracks are linked to diarized speakers from mouth motion against speech
activity; unlinked tracks stay unlinked. Crops, landmarks and patches are never returned.
"""

from __future__ import annotations

import functools
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pyannote.core import Annotation

from pipeline.settings import Settings, VisionSettings
from pipeline.stages.vision import expression_circumplex, face_detection, face_expression, face_speaker_link, face_tracking
from pipeline.stages.vision.face_expression_clips import CLIP_FRAMES
from pipeline.stages.fusion import NO_FACE, FaceEvidence
from pipeline.stages.vision.video_frames import SampledFrame, VideoError, sample_frames


@dataclass(frozen=True)
class TrackRecord:
    """A face track's summary: where and when it was, and whose it is. No image data."""

    track_id: int
    first_s: float
    last_s: float
    n_detections: int
    n_usable: int
    rejected: dict[str, int]  # quality-gate reason -> faces
    mean_face_px: float
    box: tuple[float, float, float, float]  # mean box as a share of the frame (x0, y0, x1, y1)
    speaker: str | None
    link_confidence: float
    link_evidence: str


@dataclass(frozen=True)
class FaceAffectRow:
    track_id: int
    start: float
    end: float
    n_frames: int
    probs: tuple[float, ...]  # in face_expression.EMOTIONS order
    valence: float
    arousal: float
    confidence: float
    model: str


@dataclass
class _Samples:
    """Per usable face of one track: time and the light model's reading (floats only)."""

    times: list[float] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)


@dataclass
class VisionResult:
    tracks: list[TrackRecord]
    affect: list[FaceAffectRow]
    frames_sampled: int
    seconds: dict[str, float]
    versions: dict[str, str]
    clip_device: str | None = None  # where the heavy clip model ran, when it did
    # Per track: (times, valence, arousal, confidence) of usable faces, for fusion.
    series: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    error: str | None = None  # set when the video broke mid-way; results cover what was read


EMOTIONS = face_expression.EMOTIONS


@dataclass(frozen=True)
class ClipModel:
    """The heavy clip model as the vision pass sees it: a batch function, its classes, its version.

    ``classify`` may run in-process (ONNX Runtime here) or forward to a shared GPU actor that
    batches clips across calls (pipeline.jobs.batch); the pass does not care which.
    """

    classify: Callable[[np.ndarray], np.ndarray]  # (N, 16, 160, 160, 3) uint8 RGB -> (N, C) probs
    classes: tuple[str, ...]
    version: str
    device: str = "cpu"  # where the model actually runs (its session's first provider)


def clip_model(settings: Settings) -> ClipModel | None:
    """The configured heavy clip model run in this process, or None when it is off."""
    if not settings.vision.clip_model:
        return None
    from pipeline.stages.vision import face_expression_clips

    model = face_expression_clips.load_clip_model(settings)
    # The class names travel inside the exported ONNX file: trust them over a constant.
    return ClipModel(classify=model.predict, classes=tuple(model.classes), version=model.version,
                     device=provider_device(model.providers))


def provider_device(providers: list[str]) -> str:
    """"cuda" when the model's session runs on CUDA (ONNX Runtime or torch), else "cpu"."""
    return "cuda" if providers and providers[0] in ("CUDAExecutionProvider", "torch:cuda") else "cpu"


@functools.lru_cache(maxsize=4)
def _detector(min_face_px: int, threads: int) -> face_detection.FaceDetector:
    return face_detection.FaceDetector(min_face_px=min_face_px, threads=threads)


@functools.lru_cache(maxsize=2)
def _expression_model(cache_dir: str, threads: int) -> face_expression.ExpressionModel:
    return face_expression.ExpressionModel(cache_dir=cache_dir, threads=threads)


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now


def analyze_video(
    path: str | Path,
    turns: Annotation,
    settings: Settings,
    *,
    clip: ClipModel | None = None,
) -> VisionResult:
    """Faces, tracks, speaker links and expressions of one call's video.

    ``clip`` runs the heavy clip model on selected clips; without it only the light per-frame
    model runs. A stream that breaks mid-way keeps what was read and says so in ``error``.
    """
    vs = settings.vision
    cache_dir = str(Path(settings.model_store.cache_dir).expanduser())
    detector = _detector(vs.min_face_px, vs.threads)
    expression = _expression_model(cache_dir, vs.threads)
    tracker = face_tracking.FaceTracker(min_iou=vs.track_min_iou, max_gap_s=vs.track_max_gap_s)
    motion = face_speaker_link.MouthMotion()
    clock = _Clock()
    samples: dict[int, _Samples] = defaultdict(_Samples)
    quality: dict[int, Counter] = defaultdict(Counter)
    sizes: dict[int, float] = defaultdict(float)
    pending_crops: list[np.ndarray] = []
    pending_keys: list[tuple[int, float]] = []
    clips = _ClipCollector(vs, clip.classify) if clip is not None else None
    frames = 0
    frame_shape = (1, 1)
    error = None

    def flush() -> None:
        if pending_crops:
            probs = expression.predict(np.stack(pending_crops))
            for (track, t), p in zip(pending_keys, probs):
                samples[track].times.append(t)
                samples[track].probs.append(p.astype(np.float32))
            pending_crops.clear()
            pending_keys.clear()

    faces: list[face_detection.FaceBox] = []
    last_full_detection = -np.inf
    stream = sample_frames(path, fps=vs.sample_fps, max_side=vs.max_side)
    t0 = time.perf_counter()
    try:
        for frame in stream:
            t0 = clock.add("video_decode", t0)
            frames += 1
            frame_shape = frame.rgb.shape[:2]
            # The full cascade runs every detect_every_s (and finds new faces); in between, the
            # last frame's faces are re-located by O-Net alone, about 10x cheaper. A face that
            # O-Net loses (a quick turn, a jump) sends the frame back to the full cascade.
            refined = None
            if frame.t - last_full_detection < vs.detect_every_s - 1e-6:
                refined = detector.refine(frame.rgb, faces)
            if refined is None or len(refined) < len(faces):
                faces = detector.detect(frame.rgb)
                last_full_detection = frame.t
            else:
                faces = refined
            t0 = clock.add("face_detection", t0)
            ids = tracker.update(frame.t, faces)
            t0 = clock.add("face_tracking", t0)
            if not faces:
                continue
            grey = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
            for face, track in zip(faces, ids):
                q = face_detection.assess_quality(grey, face, min_size_px=vs.min_quality_face_px,
                                                  min_sharpness=vs.min_sharpness, max_yaw=vs.max_yaw)
                quality[track][q.reason or "usable"] += 1
                sizes[track] += q.size_px
                if not q.passed:
                    continue
                box = (face.x0, face.y0, face.x1, face.y1)
                motion.add(track, frame.t, face_speaker_link.mouth_patch(grey, face.landmarks, box))
                pending_crops.append(face_expression.face_crop(grey, box))
                pending_keys.append((track, frame.t))
                if clips is not None:
                    clips.add(track, frame, box)
            t0 = clock.add("face_features", t0)
            clip_due = clips is not None and clips.due()
            if len(pending_crops) >= vs.expression_batch_size or clip_due:
                flush()  # a clip's arousal trigger needs the light model's reading of its frames
                t0 = clock.add("face_expression", t0)
            if clip_due:
                clips.maybe_cut(samples)
                t0 = clock.add("face_expression_clips", t0)
    except VideoError as exc:
        error = str(exc)
    flush()
    clip_rows: list[FaceAffectRow] = []
    t0 = clock.add("face_expression", t0)
    if clips is not None:
        clips.maybe_cut(samples)
        clip_rows = clips.finish(clip.classes, clip.version)
        t0 = clock.add("face_expression_clips", t0)

    keep = [s for s in tracker.summaries() if s.n_detections >= vs.min_track_detections]
    links = {
        link.track_id: link
        for link in face_speaker_link.link_tracks(
            motion, turns, min_score=vs.link_min_score, min_margin=vs.link_min_margin,
        )
    }
    clock.add("face_linking", t0)

    height, width = frame_shape
    tracks = []
    for s in keep:
        link = links.get(s.track_id)
        n_usable = quality[s.track_id]["usable"]
        x0, y0, x1, y1 = s.mean_box
        tracks.append(TrackRecord(
            track_id=s.track_id,
            first_s=round(s.first_s, 3),
            last_s=round(s.last_s, 3),
            n_detections=s.n_detections,
            n_usable=n_usable,
            rejected={k: v for k, v in sorted(quality[s.track_id].items()) if k != "usable"},
            mean_face_px=round(sizes[s.track_id] / max(s.n_detections, 1), 1),
            box=tuple(round(float(np.clip(v, 0.0, 1.0)), 4) for v in (x0 / width, y0 / height, x1 / width, y1 / height)),
            speaker=link.speaker if link else None,
            link_confidence=round(link.confidence, 4) if link else 0.0,
            link_evidence=link.evidence if link else "too few usable faces to compare with speech",
        ))
    kept_ids = {t.track_id for t in tracks}
    series = {tid: _series(samples[tid]) for tid in sorted(kept_ids) if samples[tid].times}
    light_version = face_expression.model_version()
    affect = [
        row for tid in sorted(series)
        for row in _windows(tid, samples[tid], settings.affect.window_s, 1.0 / vs.sample_fps, light_version)
    ] + [row for row in clip_rows if row.track_id in kept_ids]
    versions = {"face_detection": face_detection.model_version(), "face_expression": light_version}
    if clip is not None:
        versions["face_expression_clips"] = clip.version
    return VisionResult(
        tracks=tracks, affect=affect, frames_sampled=frames, seconds={k: round(v, 3) for k, v in clock.seconds.items()},
        versions=versions, series=series, error=error, clip_device=clip.device if clip is not None else None,
    )


def _series(s: _Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    probs = np.stack(s.probs)
    valence, arousal = expression_circumplex.valence_arousal(probs, face_expression.EMOTIONS)
    confidence = expression_circumplex.confidence(probs)
    return np.asarray(s.times), valence, arousal, confidence


def _windows(track_id: int, s: _Samples, window_s: float, frame_s: float, model: str) -> list[FaceAffectRow]:
    """The light model's frames pooled per fixed window of the track (mean probabilities).

    A window ends at the grid line, or one frame after its last face when the track (or the
    video) ends earlier, so no row claims time the video does not have."""
    times = np.asarray(s.times)
    probs = np.stack(s.probs)
    bins = np.floor(times / window_s).astype(int)
    rows = []
    for b in np.unique(bins):
        inside = bins == b
        end = min((b + 1) * window_s, float(times[inside].max()) + frame_s)
        rows.append(_affect_row(track_id, b * window_s, end, int(inside.sum()), probs[inside].mean(axis=0), model))
    return rows


def _affect_row(track_id: int, start: float, end: float, n_frames: int, probs: np.ndarray, model: str) -> FaceAffectRow:
    """One face_affect row from class probabilities in face_expression.EMOTIONS order."""
    valence, arousal = expression_circumplex.valence_arousal(probs[None], face_expression.EMOTIONS)
    confidence = expression_circumplex.confidence(probs[None])
    return FaceAffectRow(
        track_id=track_id, start=round(float(start), 3), end=round(float(end), 3), n_frames=n_frames,
        probs=tuple(round(float(p), 5) for p in probs), valence=round(float(valence[0]), 4),
        arousal=round(float(arousal[0]), 4), confidence=round(float(confidence[0]), 4), model=model,
    )


class _ClipCollector:
    """Selective heavy inference: 16-frame clips per track, cut where the light model reads
    arousal, at most one per clip interval, run in batches across the call's tracks."""

    def __init__(self, vs: VisionSettings, classify: Callable[[np.ndarray], np.ndarray]):
        from pipeline.stages.vision import face_expression_clips

        self._vs = vs
        self._classify = classify
        self._clip_from_crops = face_expression_clips.clip_from_crops
        self._size = face_expression_clips.CLIP_SIZE
        self._recent: dict[int, deque] = defaultdict(lambda: deque(maxlen=CLIP_FRAMES))
        self._last_check: dict[int, float] = {}  # end of the last clip considered, cut or not
        self._queue: list[tuple[int, float, float, np.ndarray]] = []
        self._done: list[tuple[int, float, float, np.ndarray]] = []

    def add(self, track: int, frame: SampledFrame, box: tuple[float, float, float, float]) -> None:
        self._recent[track].append((frame.t, _square_crop(frame.rgb, box, self._size)))

    def _ready(self) -> list[int]:
        """Tracks with 16 crops whose last considered clip is at least clip_every_s old."""
        return [
            track for track, recent in self._recent.items()
            if len(recent) == CLIP_FRAMES and recent[-1][0] - self._last_check.get(track, -np.inf) >= self._vs.clip_every_s
        ]

    def due(self) -> bool:
        return bool(self._ready())

    def maybe_cut(self, samples: dict[int, _Samples]) -> None:
        """Consider each ready track's last 16 crops once: cut a clip where the light model
        reads arousal at or above the trigger (every time when the trigger is 0)."""
        for track in self._ready():
            recent = self._recent[track]
            start, end = recent[0][0], recent[-1][0]
            self._last_check[track] = end
            trigger = self._vs.clip_arousal_trigger
            if trigger > 0 and _recent_arousal(samples.get(track), start, end) < trigger:
                continue
            self._queue.append((track, start, end, self._clip_from_crops([c for _, c in recent])))
        if len(self._queue) >= self._vs.clip_batch_size:
            self._run()

    def _run(self) -> None:
        if self._queue:
            probs = self._classify(np.stack([c for *_, c in self._queue]))
            self._done += [(track, start, end, p) for (track, start, end, _), p in zip(self._queue, probs)]
            self._queue = []

    def finish(self, classes: tuple[str, ...], model: str) -> list[FaceAffectRow]:
        self._run()
        order = [classes.index(e) for e in face_expression.EMOTIONS]  # the model's order -> the table's
        return [
            _affect_row(track, start, end, CLIP_FRAMES, np.asarray(p, np.float64)[order], model)
            for track, start, end, p in self._done
        ]


def _recent_arousal(s: _Samples | None, start: float, end: float) -> float:
    if s is None or not s.times:
        return 0.0
    times = np.asarray(s.times[-4 * CLIP_FRAMES:])
    probs = np.stack(s.probs[-4 * CLIP_FRAMES:])
    inside = (times >= start) & (times <= end)
    if not inside.any():
        return 0.0
    _, arousal = expression_circumplex.valence_arousal(probs[inside], face_expression.EMOTIONS)
    return float(arousal.mean())


def _square_crop(rgb: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The face's square crop (box side + 10 % margin), resized to size x size, clipped at edges."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * 1.1
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = rgb.shape[:2]
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    right, bottom = left + int(round(side)), top + int(round(side))
    crop = rgb[max(top, 0):min(bottom, h), max(left, 0):min(right, w)]
    pad = ((max(-top, 0), max(bottom - h, 0)), (max(-left, 0), max(right - w, 0)), (0, 0))
    crop = np.pad(crop, pad, mode="edge") if any(p for pair in pad[:2] for p in pair) else crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def face_evidence(windows: list[tuple[str, float, float]], result: VisionResult | None, fps: float) -> list[FaceEvidence]:
    """Each fused window's face reading: the speaker's linked track(s) over the window.

    Confidence = mean model confidence x link confidence x coverage, where coverage is the share
    of the window's sampled frames that held a usable face of the speaker (capped at 1).
    """
    if result is None:
        return [NO_FACE] * len(windows)
    by_speaker: dict[str, list[TrackRecord]] = defaultdict(list)
    for track in result.tracks:
        if track.speaker is not None and track.track_id in result.series:
            by_speaker[track.speaker].append(track)
    out = []
    for speaker, start, end in windows:
        values, weights, link_conf, n = [], [], [], 0
        for track in by_speaker.get(speaker, []):
            times, valence, arousal, conf = result.series[track.track_id]
            inside = (times >= start) & (times < end)
            if inside.any():
                values.append(np.stack([valence[inside], arousal[inside]], axis=1))
                weights.append(conf[inside])
                link_conf.append(track.link_confidence)
                n += int(inside.sum())
        if not n:
            out.append(NO_FACE)
            continue
        v = np.concatenate(values)
        w = np.concatenate(weights) + 1e-6
        mean = (v * w[:, None]).sum(axis=0) / w.sum()
        coverage = min(1.0, n / max(1.0, (end - start) * fps))
        confidence = float(np.mean(np.concatenate(weights))) * max(link_conf) * coverage
        out.append(FaceEvidence(float(mean[0]), float(mean[1]), round(confidence, 4)))
    return out
