"""Face <-> speaker linking: which face track is which diarized speaker, or none.

Evidence is audio-visual: a speaker's mouth moves while they talk. Per track, the mouth region
(from the detector's landmarks) is sampled a few times a second and its change between samples
is the track's *mouth motion*. For each track and speaker, the motion samples taken while the
speaker talks (alone) are ranked against those taken while the speaker is silent: the AUC (the
chance that a talking sample moves more than a silent one) says how well that speaker explains
the mouth. Rank-based, so a track's own level of head motion and noise does not matter.

Tracks and speakers are then matched one to one (Hungarian); a match is kept only when its score
is high enough and clearly ahead of the runner-up, otherwise the track stays unlinked: a silent
observer, a speaker heard but not shown or an ambiguous pair is better left open than guessed.
Tracks that never share the screen may go to the same speaker (one face split into fragments).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import cv2
import numpy as np
from pyannote.core import Annotation
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from pipeline.stages import contract

PATCH_SHAPE = (16, 24)  # rows, columns: wider than tall, like a mouth
# The patch's size and tilt come from the eyes, which speech does not move: the detector's
# mouth corners jump by a few pixels on a closed mouth (tilting the patch by degrees between
# frames), and an opening mouth drags them, so patches placed by the corners alone "move" on a
# silent face. Sizes are in inter-ocular distances (iod): 1.1 wide, 1.0 tall, 0.35 of it above
# the mouth's centre (the upper lip) and 0.65 below (lower lip and jaw drop).
_PATCH_WIDTH_IOD, _PATCH_ABOVE_IOD, _PATCH_BELOW_IOD = 1.1, 0.35, 0.65
# The mouth's centre is the mean of three estimates (jitter averages out): the corners'
# midpoint, and typical face proportions below the nose tip and below the eyes' midpoint.
_MOUTH_BELOW_NOSE_IOD, _MOUTH_BELOW_EYES_IOD = 0.43, 0.98
# Patches are compared at this many pixels of relative shift and the best match kept: the
# detector's landmarks jitter by a pixel or two between frames, which is not mouth motion.
# (Generated linking set, seed 0: true links' median score 0.84 -> 0.97, worst 0.35 -> 0.89.)
_MAX_SHIFT = 1
# Mouth motion: a sample is compared with the track's previous one only if that is this recent.
MAX_SAMPLE_GAP_S = 0.5
# Motion is averaged over this window before it is ranked: one pair of frames 0.2 s apart may
# catch a talking mouth at the same opening twice, a second of them rarely does. (Same set: true
# links' median 0.74 -> 0.97, worst 0.55 -> 0.89; a silent face's best rises to 0.4-0.5, which
# is why min_score is 0.6.)
SMOOTHING_S = 1.0
# A sample counts as "talking" when the speaker talks over at least this share of its window.
_TALKING_SHARE = 0.5
_UNMATCHABLE = 1e6  # assignment cost of a pair that must not be matched


def _mouth_geometry(landmarks, box) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(centre, across, down, iod) of the mouth: unit vectors along and across the eye line.

    When the eyes are implausibly close (a profile, a bad fit), from the box instead: mouth at
    its lower middle, as on an upright face.
    """
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    x0, y0, x1, y1 = (float(v) for v in box)
    iod = float(np.hypot(*(right_eye - left_eye)))
    if iod < 0.2 * (x1 - x0):
        centre = np.array([(x0 + x1) / 2, y0 + 0.78 * (y1 - y0)])
        return centre, np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.4 * (x1 - x0)
    across = (right_eye - left_eye) / iod
    down = np.array([-across[1], across[0]])  # image y points down
    centre = ((mouth_left + mouth_right) / 2 + nose + _MOUTH_BELOW_NOSE_IOD * iod * down
              + (left_eye + right_eye) / 2 + _MOUTH_BELOW_EYES_IOD * iod * down) / 3
    return centre, across, down, iod


def mouth_patch(grey: np.ndarray, landmarks, box) -> np.ndarray:
    """The mouth region as a (16, 24) float32 patch with zero mean and unit variance.

    ``grey``: the frame (H, W) uint8; ``landmarks``: the detector's 5 points (left eye, right
    eye, nose, mouth left, mouth right); ``box``: (x0, y0, x1, y1). The region follows the
    face's position, scale and roll (see _mouth_geometry); normalising for mean and contrast
    means lighting changes do not read as motion.
    """
    centre, across, down, iod = _mouth_geometry(landmarks, box)
    width, height = _PATCH_WIDTH_IOD * iod, (_PATCH_ABOVE_IOD + _PATCH_BELOW_IOD) * iod
    top_left = centre - across * width / 2 - down * _PATCH_ABOVE_IOD * iod
    rows, cols = PATCH_SHAPE
    # Affine map from patch pixel (col, row) to frame (x, y), sampling pixel centres.
    step_x, step_y = across * width / cols, down * height / rows
    to_frame = np.column_stack([step_x, step_y, top_left + (step_x + step_y) / 2])
    source = grey
    shrink = max(width / cols, height / rows)
    if shrink > 1.5:  # blur before shrinking a lot: aliasing would read as motion
        corners = top_left + np.array([[0, 0], across * width, down * height, across * width + down * height])
        pad = int(3 * shrink) + 2
        gx0, gy0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - pad, 0)
        gx1, gy1 = np.ceil(corners.max(axis=0)).astype(int) + pad
        if gx1 > gx0 and gy1 > gy0:
            source = cv2.GaussianBlur(grey[gy0:gy1, gx0:gx1], (0, 0), sigmaX=0.5 * shrink)
            to_frame[:, 2] -= (gx0, gy0)
    patch = cv2.warpAffine(source, to_frame, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    spread = float(patch.std())
    return (patch - patch.mean()) / spread if spread > 1e-3 else np.zeros(PATCH_SHAPE, np.float32)


def _patch_change(patch: np.ndarray, previous: np.ndarray) -> float:
    """Mean absolute difference of two patches, at the relative shift (up to _MAX_SHIFT pixels
    each way) where they match best."""
    rows, cols = patch.shape
    m = _MAX_SHIFT
    core = patch[m:rows - m, m:cols - m]
    return float(min(np.mean(np.abs(core - previous[m + dy:rows - m + dy, m + dx:cols - m + dx]))
                     for dy in range(-m, m + 1) for dx in range(-m, m + 1)))


class MouthMotion:
    """Per-track mouth motion, accumulated one sample at a time.

    A sample's motion is the mean absolute difference between the track's patch and its
    previous one (at the best shift by a pixel, see _MAX_SHIFT), kept only when that one is at
    most ``max_gap_s`` older (after a gap the face may have changed for other reasons). Memory:
    three floats per sample and the last patch per track, whatever the video's length.
    """

    def __init__(self, max_gap_s: float = MAX_SAMPLE_GAP_S):
        self.max_gap_s = max_gap_s
        self._last: dict[int, tuple[float, np.ndarray]] = {}
        self._starts: dict[int, array] = {}
        self._ends: dict[int, array] = {}
        self._motion: dict[int, array] = {}

    def add(self, track_id: int, t: float, patch: np.ndarray) -> None:
        last = self._last.get(track_id)
        if last is not None and 0.0 < t - last[0] <= self.max_gap_s:
            self._starts.setdefault(track_id, array("d")).append(last[0])
            self._ends.setdefault(track_id, array("d")).append(t)
            self._motion.setdefault(track_id, array("d")).append(_patch_change(patch, last[1]))
        self._last[track_id] = (t, np.array(patch, dtype=np.float32))

    @property
    def track_ids(self) -> list[int]:
        return sorted(self._last)

    def series(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(times, motion): each sample's time (its later frame) and motion; empty if none."""
        return (np.asarray(self._ends.get(track_id, ()), dtype=np.float64),
                np.asarray(self._motion.get(track_id, ()), dtype=np.float64))

    def intervals(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends): the two frame times each motion sample compares."""
        return (np.asarray(self._starts.get(track_id, ()), dtype=np.float64),
                np.asarray(self._ends.get(track_id, ()), dtype=np.float64))


@dataclass(frozen=True)
class TrackLink:
    """A track's speaker, or None when the evidence does not settle it.

    score: 2 * AUC - 1 (rank-biserial correlation) of mouth motion while ``speaker`` talks
        against while they are silent; 1 = the mouth always moves more when they talk, 0 = no
        relation. For an unlinked track, the best candidate's score (nan when there was none).
    confidence: in [0, 1], the weaker of ``score`` and the margin over the runner-up (the next
        best speaker for this track, or the next best co-visible track for this speaker);
        0 for an unlinked track.
    evidence: a short human-readable why.
    """

    track_id: int
    speaker: str | None
    confidence: float
    score: float
    evidence: str


def _speech_share(starts: np.ndarray, ends: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Share of each interval [start, end] covered by the segments ((n, 2), sorted, disjoint).

    Through the cumulative talk time, piecewise linear in t: O((intervals + segments) log), so
    an hour-long call's thousands of samples and turns stay cheap.
    """
    if len(segments) == 0:
        return np.zeros(len(starts))
    knots = segments.reshape(-1)  # start0, end0, start1, end1, ...
    durations = segments[:, 1] - segments[:, 0]
    talked_before = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    cumulative = np.stack([talked_before, talked_before + durations], axis=1).reshape(-1)
    covered = np.interp(ends, knots, cumulative) - np.interp(starts, knots, cumulative)
    return covered / np.maximum(ends - starts, 1e-9)


def _smoothed(starts: np.ndarray, ends: np.ndarray, values: np.ndarray, window_s: float):
    """Each sample's motion averaged over the samples whose times lie within window_s / 2 of
    its own, and the time span those samples cover: (window starts, window ends, motion)."""
    lo = np.searchsorted(ends, ends - window_s / 2, side="left")
    hi = np.searchsorted(ends, ends + window_s / 2, side="right")
    total = np.concatenate([[0.0], np.cumsum(values)])
    return starts[lo], ends[hi - 1], (total[hi] - total[lo]) / (hi - lo)


def _auc_score(motion: np.ndarray, speaking: np.ndarray, silent: np.ndarray) -> float:
    """2 * AUC - 1 of motion[speaking] against motion[silent] (ties count half)."""
    ranks = rankdata(np.concatenate([motion[speaking], motion[silent]]))
    n_pos, n_neg = int(speaking.sum()), int(silent.sum())
    auc = (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(2.0 * auc - 1.0)


@dataclass(frozen=True)
class _Scores:
    """Every (track, speaker) score, with what the links and their reasons need."""

    tracks: list[int]
    speakers: list[str]
    scores: np.ndarray  # (tracks, speakers), nan where a pair could not be scored
    counts: dict[tuple[int, int], tuple[int, int]]  # (talking, silent) samples per scored pair
    spans: list[tuple[float, float]]  # each track's first and last sample time

    def co_visible(self, a: int, b: int) -> bool:
        return self.spans[a][0] < self.spans[b][1] and self.spans[b][0] < self.spans[a][1]

    def margin(self, i: int, j: int) -> tuple[float, str]:
        """Score minus the best rival: another speaker for this track, or another co-visible
        track for this speaker (chance, 0, when there is none)."""
        row = [(self.scores[i, k], f"speaker {self.speakers[k]}") for k in range(len(self.speakers)) if k != j]
        col = [(self.scores[k, j], f"track {self.tracks[k]}") for k in range(len(self.tracks))
               if k != i and self.co_visible(i, k)]
        rivals = [(s, name) for s, name in row + col if np.isfinite(s)]
        best, name = max(rivals, default=(0.0, "chance"))
        return self.scores[i, j] - max(best, 0.0), name if best > 0.0 else "chance"


def _score(motion: MouthMotion, turns: Annotation, min_samples: int, min_class_samples: int, smoothing_s: float) -> _Scores:
    tracks = motion.track_ids
    speakers = sorted(turns.labels())
    segments = {s: np.array([(seg.start, seg.end) for seg in turns.label_timeline(s).support()]).reshape(-1, 2)
                for s in speakers}
    scores = np.full((len(tracks), len(speakers)), np.nan)
    counts: dict[tuple[int, int], tuple[int, int]] = {}
    spans: list[tuple[float, float]] = []
    for i, track in enumerate(tracks):
        starts, ends = motion.intervals(track)
        values = motion.series(track)[1]
        spans.append((float(starts[0]), float(ends[-1])) if len(starts) else (np.inf, -np.inf))
        if len(values) < min_samples:
            continue
        starts, ends, values = _smoothed(starts, ends, values, smoothing_s)
        shares = np.array([_speech_share(starts, ends, segments[s]) for s in speakers])
        shares = shares.reshape(len(speakers), len(values))  # (0, n) when nobody speaks
        for j in range(len(speakers)):
            others = np.delete(shares, j, axis=0)
            # Talking alone: overlapped samples would credit whichever mouth moves to both.
            speaking = (shares[j] >= _TALKING_SHARE) & ~(others >= _TALKING_SHARE).any(axis=0)
            silent = shares[j] == 0.0
            counts[i, j] = int(speaking.sum()), int(silent.sum())
            if min(counts[i, j]) >= min_class_samples:
                scores[i, j] = _auc_score(values, speaking, silent)
    return _Scores(tracks, speakers, scores, counts, spans)


def _match(sc: _Scores, min_score: float, min_margin: float) -> dict[int, int]:
    """Track row -> speaker column. Rounds of one-to-one matching; later rounds let a track join
    a speaker whose tracks so far never shared the screen with it (a face track split in two)."""
    linked: dict[int, int] = {}
    while True:
        open_rows = [i for i in range(len(sc.tracks)) if i not in linked]
        cost = np.full((len(open_rows), len(sc.speakers)), _UNMATCHABLE)
        for r, i in enumerate(open_rows):
            for j in range(len(sc.speakers)):
                taken = any(linked[k] == j and sc.co_visible(i, k) for k in linked)
                if np.isfinite(sc.scores[i, j]) and not taken:
                    cost[r, j] = -sc.scores[i, j]
        if cost.size == 0:
            break
        new = [(open_rows[r], j) for r, j in zip(*linear_sum_assignment(cost))
               if cost[r, j] < _UNMATCHABLE and sc.scores[open_rows[r], j] >= min_score
               and sc.margin(open_rows[r], j)[0] >= min_margin]
        if not new:
            break
        linked.update(new)
    return linked


def _unlinked(sc: _Scores, i: int, n_samples: int, min_samples: int, min_score: float, min_margin: float) -> TrackLink:
    track, scores, speakers = sc.tracks[i], sc.scores, sc.speakers
    if n_samples < min_samples:
        return TrackLink(track, None, 0.0, float("nan"), f"too few samples ({n_samples} < {min_samples})")
    if not np.isfinite(scores[i]).any():
        return TrackLink(track, None, 0.0, float("nan"), "no speaker both talks and is silent in the track's time span")
    j = int(np.nanargmax(scores[i]))
    lead, rival = sc.margin(i, j)
    why = (f"best {speakers[j]} scores {scores[i, j]:.2f} < {min_score}" if scores[i, j] < min_score
           else f"best {speakers[j]} ({scores[i, j]:.2f}) only {lead:.2f} ahead of {rival}"
           if lead < min_margin else f"{speakers[j]} went to a co-visible track that fits it better")
    return TrackLink(track, None, 0.0, float(scores[i, j]), f"unlinked: {why}")


def link_tracks(
    motion: MouthMotion,
    turns: Annotation,
    *,
    min_samples: int = 20,
    min_class_samples: int = 5,
    min_score: float = 0.6,
    min_margin: float = 0.2,
    smoothing_s: float = SMOOTHING_S,
) -> list[TrackLink]:
    """One TrackLink per track in ``motion`` (in track id order); pure, no I/O.

    min_samples: motion samples a track needs before it can be linked at all.
    min_class_samples: samples needed both while the speaker talks alone and while they are
        silent; a speaker never (or hardly) active in the track's time span cannot be linked.
    min_score / min_margin: see ``TrackLink``; a link needs score >= min_score and a margin
        over the runner-up >= min_margin.
    smoothing_s: motion is averaged over this window, and speech is measured over the same.
    """
    sc = _score(motion, turns, min_samples, min_class_samples, smoothing_s)
    linked = _match(sc, min_score, min_margin)
    out = []
    for i, track in enumerate(sc.tracks):
        if i not in linked:
            out.append(_unlinked(sc, i, len(motion.series(track)[1]), min_samples, min_score, min_margin))
            continue
        j = linked[i]
        lead, rival = sc.margin(i, j)
        talking, silent = sc.counts[i, j]
        score = sc.scores[i, j]
        out.append(TrackLink(
            track, sc.speakers[j], float(np.clip(min(score, lead), 0.0, 1.0)), float(score),
            f"mouth moves with {sc.speakers[j]}: score {score:.2f} over {talking} talking / {silent} "
            f"silent samples, {lead:.2f} ahead of {rival}",
        ))
    return out


# A part of the face branch's one pass over the video, timed inside it.
STAGE = contract.Stage("face_linking", backend=contract.fixed("lip-motion"))
