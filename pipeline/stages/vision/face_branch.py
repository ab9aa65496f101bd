"""The face branch of one call: sampled frames -> faces -> tracks -> speakers, and expressions.

One streaming pass over the video (``video_frames``): faces are found by MTCNN's full
cascade every ``detect_every_s`` and followed by its last net (O-Net) on the frames between,
faces are linked into tracks, and every face that passes the face quality check gives a
mouth patch (for lip motion). After that pass, tracks are linked to diarized speakers from
mouth motion against speech activity; unlinked tracks stay unlinked.

Only then, in a second pass over the video, the faces of tracks linked to speakers the
inference policy allows (customers with video consent) are cropped at the boxes the first pass
kept and read by the light expression model, in batches; when a heavy clip model (MAE-DFER) is
configured, ``clip_selection`` hands it 16-frame clips where the light model reads arousal. An
agent's face, or a face nobody could link, never reaches an expression model. Nothing per frame
outlives either pass except a few floats per usable face (``face_readings``), so memory grows
by bytes, not images, with length. Crops, landmarks and patches are never returned.
"""

from __future__ import annotations

import functools
import time
from collections import Counter, defaultdict
from collections.abc import Collection
from pathlib import Path

import cv2
import numpy as np
from pyannote.core import Annotation

from pipeline.records import (
    NO_FACE,
    ClipModel,
    FaceAffectWindow,
    FaceBranchResult,
    FaceEvidence,
    FaceTrack,
    SpeakerWindow,
)
from pipeline.settings import Settings
from pipeline.stages import contract
from pipeline.stages.vision import (
    face_detection,
    face_expression,
    face_expression_clips,
    face_speaker_link,
    face_tracking,
    video_frames,
)
from pipeline.stages.vision.clip_selection import ClipCollector
from pipeline.stages.vision.face_readings import TrackReadings, pooled_windows, series
from pipeline.stages.vision.video_frames import SampledFrame, VideoError, sample_frames

# The face quality check and the mouth patch, per face, between tracking and expression.
FEATURES_STAGE = contract.Stage("face_features", backend=contract.fixed("quality-gate+mouth-patch"))
# The parts of the pass, in order, each timed under its own stage_metrics row.
PARTS = (
    video_frames.STAGE, face_detection.STAGE, face_tracking.STAGE, FEATURES_STAGE,
    face_expression.STAGE, face_expression_clips.STAGE, face_speaker_link.STAGE,
)
EMOTIONS = face_expression.EMOTIONS


def clip_model(settings: Settings) -> ClipModel | None:
    """The configured heavy clip model run in this process, or None when it is off."""
    if not settings.vision.clip_model:
        return None
    model = face_expression_clips.load_clip_model(settings)
    # The class names travel inside the exported ONNX file: trust them over a constant.
    return ClipModel(classify=model.predict, classes=tuple(model.classes), version=model.version,
                     device=provider_device(model.providers))


def provider_device(providers: list[str]) -> str:
    """"cuda" when the model's session runs on CUDA (ONNX Runtime or torch), else "cpu"."""
    return "cuda" if providers and providers[0] in ("CUDAExecutionProvider", "torch:cuda") else "cpu"


def parts_info(settings: Settings, result: FaceBranchResult | None) -> dict[str, contract.StageInfo]:
    """stage_metrics facts of the pass's parts; the heavy model's runtime and device are the
    ones that ran (its version starts with its runtime: mae-dfer-onnx or mae-dfer-torch)."""
    info = {part.name: part.info(settings) for part in PARTS}
    clips = face_expression_clips.STAGE
    ran = (result.versions if result else {}).get(clips.model_key)
    info[clips.name] = contract.StageInfo(
        ran.split(":")[0] if ran else info[clips.name].backend, clips.model_key, (result and result.clip_device) or "cpu",
    )
    return info


@functools.lru_cache(maxsize=4)
def _detector(min_face_px: int, threads: int) -> face_detection.FaceDetector:
    return face_detection.FaceDetector(min_face_px=min_face_px, threads=threads)


@functools.lru_cache(maxsize=2)
def _expression_model(cache_dir: str, threads: int) -> face_expression.ExpressionModel:
    return face_expression.ExpressionModel(cache_dir=cache_dir, threads=threads)


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, part: contract.Stage, since: float) -> float:
        now = time.perf_counter()
        self.seconds[part.name] += now - since
        return now


class _FacePass:
    """The first pass over a call's video: faces found, tracked, checked and their mouths
    followed. No face reaches an expression model here: whose face it is is not known yet. Per
    face only floats are kept: quality counts, sizes, mouth motion and where the usable face was."""

    def __init__(self, settings: Settings):
        vs = self.vs = settings.vision
        self.detector = _detector(vs.min_face_px, vs.threads)
        self.tracker = face_tracking.FaceTracker(min_iou=vs.track_min_iou, max_gap_s=vs.track_max_gap_s)
        self.motion = face_speaker_link.MouthMotion()
        self.clock = _Clock()
        self.quality: dict[int, Counter] = defaultdict(Counter)
        self.sizes: dict[int, float] = defaultdict(float)
        # Sampled frame index -> (track, box) of each usable face: where the second pass may read.
        self.usable: dict[int, list[tuple[int, tuple[float, float, float, float]]]] = defaultdict(list)
        self.frames = 0
        self.frame_shape = (1, 1)
        self.faces: list[face_detection.FaceBox] = []
        self.last_full_detection = -np.inf

    def run(self, path: str | Path) -> str | None:
        """Read the whole video; a stream that breaks keeps what was read and says why."""
        t0 = time.perf_counter()
        try:
            for frame in sample_frames(path, fps=self.vs.sample_fps, max_side=self.vs.max_side):
                t0 = self._frame(frame.index, frame, self.clock.add(video_frames.STAGE, t0))
        except VideoError as exc:
            return str(exc)
        return None

    def _locate(self, frame: SampledFrame) -> list[face_detection.FaceBox]:
        # The full cascade runs every detect_every_s (and finds new faces); in between, the
        # last frame's faces are re-located by O-Net alone, about 10x cheaper. A face that
        # O-Net loses (a quick turn, a jump) sends the frame back to the full cascade.
        refined = None
        if frame.t - self.last_full_detection < self.vs.detect_every_s - 1e-6:
            refined = self.detector.refine(frame.rgb, self.faces)
        if refined is None or len(refined) < len(self.faces):
            self.last_full_detection = frame.t
            return self.detector.detect(frame.rgb)
        return refined

    def _frame(self, index: int, frame: SampledFrame, t0: float) -> float:
        self.frames += 1
        self.frame_shape = frame.rgb.shape[:2]
        self.faces = self._locate(frame)
        t0 = self.clock.add(face_detection.STAGE, t0)
        ids = self.tracker.update(frame.t, self.faces)
        t0 = self.clock.add(face_tracking.STAGE, t0)
        if not self.faces:
            return t0
        self._check_faces(index, frame, ids)
        return self.clock.add(FEATURES_STAGE, t0)

    def _check_faces(self, index: int, frame: SampledFrame, ids: list[int]) -> None:
        vs = self.vs
        grey = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
        for face, track in zip(self.faces, ids):
            q = face_detection.assess_quality(grey, face, min_size_px=vs.min_quality_face_px,
                                              min_sharpness=vs.min_sharpness, max_yaw=vs.max_yaw)
            self.quality[track][q.reason or "usable"] += 1
            self.sizes[track] += q.size_px
            if not q.passed:
                continue
            box = (face.x0, face.y0, face.x1, face.y1)
            self.motion.add(track, frame.t, face_speaker_link.mouth_patch(grey, face.landmarks, box))
            self.usable[index].append((track, box))

    def tracks(self, turns: Annotation) -> list[FaceTrack]:
        """Tracks seen often enough, each linked to a speaker where mouth motion says so."""
        t0 = time.perf_counter()
        vs = self.vs
        keep = [s for s in self.tracker.summaries() if s.n_detections >= vs.min_track_detections]
        links = {
            link.track_id: link
            for link in face_speaker_link.link_tracks(self.motion, turns, min_score=vs.link_min_score, min_margin=vs.link_min_margin)
        }
        self.clock.add(face_speaker_link.STAGE, t0)
        height, width = self.frame_shape
        tracks = []
        for s in keep:
            link = links.get(s.track_id)
            x0, y0, x1, y1 = s.mean_box
            tracks.append(FaceTrack(
                track_id=s.track_id,
                first_s=round(s.first_s, 3),
                last_s=round(s.last_s, 3),
                n_detections=s.n_detections,
                n_usable=self.quality[s.track_id]["usable"],
                rejected={k: v for k, v in sorted(self.quality[s.track_id].items()) if k != "usable"},
                mean_face_px=round(self.sizes[s.track_id] / max(s.n_detections, 1), 1),
                box=tuple(round(float(np.clip(v, 0.0, 1.0)), 4) for v in (x0 / width, y0 / height, x1 / width, y1 / height)),
                speaker=link.speaker if link else None,
                link_confidence=round(link.confidence, 4) if link else 0.0,
                link_evidence=link.evidence if link else "too few usable faces to compare with speech",
            ))
        return tracks


class _ExpressionPass:
    """The second pass: the expression models read the usable faces of the tracks the inference
    policy allows, and no other face. Frames are decoded again (cheap next to detection) and
    cropped at the boxes the first pass kept."""

    def __init__(self, settings: Settings, clip: ClipModel | None, clock: _Clock):
        vs = self.vs = settings.vision
        self.expression = _expression_model(str(Path(settings.model_store.cache_dir).expanduser()), vs.threads)
        self.clock = clock
        self.readings: dict[int, TrackReadings] = defaultdict(TrackReadings)
        self.pending_crops: list[np.ndarray] = []
        self.pending_keys: list[tuple[int, float]] = []  # (track, time) of each pending crop
        self.clips = ClipCollector(vs, clip.classify) if clip is not None else None

    def run(self, path: str | Path, faces: dict[int, list[tuple[int, tuple]]], clip: ClipModel | None) -> list[FaceAffectWindow]:
        last = max(faces, default=-1)
        t0 = time.perf_counter()
        try:
            for frame in sample_frames(path, fps=self.vs.sample_fps, max_side=self.vs.max_side):
                t0 = self.clock.add(video_frames.STAGE, t0)
                if frame.index > last:
                    break
                if frame.index in faces:
                    t0 = self._frame(frame, faces[frame.index], t0)
        except VideoError:
            pass  # the first pass read the same stream and reported where it broke
        self._flush()
        t0 = self.clock.add(face_expression.STAGE, t0)
        if self.clips is None:
            return []
        self.clips.maybe_cut(self.readings)
        rows = self.clips.finish(clip.classes, clip.version)
        self.clock.add(face_expression_clips.STAGE, t0)
        return rows

    def _frame(self, frame: SampledFrame, faces: list[tuple[int, tuple]], t0: float) -> float:
        grey = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
        for track, box in faces:
            self.pending_crops.append(face_expression.face_crop(grey, box))
            self.pending_keys.append((track, frame.t))
            if self.clips is not None:
                self.clips.add(track, frame, box)
        t0 = self.clock.add(FEATURES_STAGE, t0)
        clip_due = self.clips is not None and self.clips.due()
        if len(self.pending_crops) >= self.vs.expression_batch_size or clip_due:
            self._flush()  # a clip's arousal trigger needs the light model's reading of its frames
            t0 = self.clock.add(face_expression.STAGE, t0)
        if clip_due:
            self.clips.maybe_cut(self.readings)
            t0 = self.clock.add(face_expression_clips.STAGE, t0)
        return t0

    def _flush(self) -> None:
        if self.pending_crops:
            probs = self.expression.predict(np.stack(self.pending_crops))
            for (track, t), p in zip(self.pending_keys, probs):
                self.readings[track].times.append(t)
                self.readings[track].probs.append(p.astype(np.float32))
            self.pending_crops.clear()
            self.pending_keys.clear()


def analyze_video(path: str | Path, turns: Annotation, settings: Settings, *, readable: Collection[str] = (),
                  clip: ClipModel | None = None) -> FaceBranchResult:
    """Faces, tracks, speaker links of one call's video, and the expressions of the speakers in
    ``readable`` (the inference policy's allowed speakers; nobody by default).

    Expressions are read only from tracks linked to a readable speaker: an unlinked face may be
    the agent's. ``clip`` runs the heavy clip model on selected clips; without it only the light
    per-frame model runs. A stream that breaks mid-way keeps what was read and says so in ``error``.
    """
    face_pass = _FacePass(settings)
    error = face_pass.run(path)
    tracks = face_pass.tracks(turns)
    read_ids = {t.track_id for t in tracks if t.speaker is not None and t.speaker in readable}
    wanted = {index: kept for index, faces in face_pass.usable.items()
              if (kept := [(track, box) for track, box in faces if track in read_ids])}
    readings: dict[int, TrackReadings] = {}
    clip_rows: list[FaceAffectWindow] = []
    if wanted:
        expressions = _ExpressionPass(settings, clip, face_pass.clock)
        clip_rows = expressions.run(path, wanted, clip)
        readings = expressions.readings
    by_track = {tid: series(readings[tid]) for tid in sorted(read_ids) if tid in readings and readings[tid].times}
    light_version = face_expression.model_version()
    frame_s = 1.0 / settings.vision.sample_fps
    affect = [
        row for tid in sorted(by_track)
        for row in pooled_windows(tid, readings[tid], settings.affect.window_s, frame_s, light_version)
    ] + [row for row in clip_rows if row.track_id in read_ids]
    versions = {"face_detection": face_detection.model_version(), "face_expression": light_version}
    if clip is not None:
        versions["face_expression_clips"] = clip.version
    return FaceBranchResult(
        tracks=tracks, affect=affect, frames_sampled=face_pass.frames,
        seconds={k: round(v, 3) for k, v in face_pass.clock.seconds.items()}, versions=versions, series=by_track,
        error=error, clip_device=clip.device if clip is not None else None,
    )


def face_evidence(windows: list[SpeakerWindow], result: FaceBranchResult | None, fps: float) -> list[FaceEvidence]:
    """Each fused window's face reading: the speaker's linked track(s) over the window.

    Confidence = mean model confidence x link confidence x coverage, where coverage is the share
    of the window's sampled frames that held a usable face of the speaker (capped at 1).
    """
    if result is None:
        return [NO_FACE] * len(windows)
    by_speaker: dict[str, list[FaceTrack]] = defaultdict(list)
    for track in result.tracks:
        if track.speaker is not None and track.track_id in result.series:
            by_speaker[track.speaker].append(track)
    out = []
    for window in windows:
        start, end = window.start, window.end
        values, weights, link_conf, n = [], [], [], 0
        for track in by_speaker.get(window.speaker, []):
            series = result.series[track.track_id]
            times, valence, arousal, conf = series.times, series.valence, series.arousal, series.confidence
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
