"""Face <-> speaker linking: mouth patches, mouth motion, the linking rules, and one generated call
decoded, detected, tracked and linked end to end."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from pipeline.devtools.evaluation import load_rttm
from pipeline.stages.vision.face_speaker_link import PATCH_SHAPE, MouthMotion, TrackLink, link_tracks, mouth_patch
from pipeline.devtools.synth_video import PHOTO_LIP_CENTRE, PHOTO_MOUTH_HALF_WIDTH, generate_video_call

# MTCNN's landmarks on grace_hopper.jpg (left eye, right eye, nose, mouth left, mouth right) and box.
HOPPER_LANDMARKS = ((226, 195), (313, 190), (273, 241), (236, 281), (310, 278))
HOPPER_BOX = (173, 116, 357, 340)
STEP_S = 0.2  # 5 samples per second, as the pipeline samples video


@pytest.fixture(scope="module")
def hopper_grey() -> np.ndarray:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)


def _open_mouth(grey: np.ndarray, height: int) -> np.ndarray:
    out = grey.copy()
    cx, cy = PHOTO_LIP_CENTRE
    cv2.ellipse(out, (int(cx), int(cy + height / 2)), (int(PHOTO_MOUTH_HALF_WIDTH * 0.7), height // 2),
                0, 0, 360, 30, -1, cv2.LINE_AA)
    return out


def test_mouth_patch_is_normalised_and_ignores_lighting(hopper_grey):
    patch = mouth_patch(hopper_grey, HOPPER_LANDMARKS, HOPPER_BOX)
    assert patch.shape == PATCH_SHAPE and patch.dtype == np.float32
    assert abs(patch.mean()) < 1e-4 and abs(patch.std() - 1.0) < 1e-3
    darker = cv2.convertScaleAbs(hopper_grey, alpha=0.6, beta=20)
    relit = mouth_patch(darker, HOPPER_LANDMARKS, HOPPER_BOX)
    opened = mouth_patch(_open_mouth(hopper_grey, 20), HOPPER_LANDMARKS, HOPPER_BOX)
    # A lighting change barely moves the patch; an opening mouth moves it a lot.
    assert np.mean(np.abs(relit - patch)) < 0.1
    assert np.mean(np.abs(opened - patch)) > 4 * np.mean(np.abs(relit - patch))


def test_mouth_patch_follows_the_face_and_falls_back_to_the_box(hopper_grey):
    patch = mouth_patch(hopper_grey, HOPPER_LANDMARKS, HOPPER_BOX)
    # The whole face 30 px to the right: landmarks and box move with it, the patch does not.
    shifted = np.roll(hopper_grey, 30, axis=1)
    moved = [(x + 30, y) for x, y in HOPPER_LANDMARKS]
    box = (HOPPER_BOX[0] + 30, HOPPER_BOX[1], HOPPER_BOX[2] + 30, HOPPER_BOX[3])
    assert np.mean(np.abs(mouth_patch(shifted, moved, box) - patch)) < 0.05
    # Degenerate landmarks (both eyes on one point): the box's lower middle, still the mouth.
    collapsed = [(273, 192)] * 2 + list(HOPPER_LANDMARKS[2:])
    fallback = mouth_patch(hopper_grey, collapsed, HOPPER_BOX)
    assert fallback.shape == PATCH_SHAPE and np.isfinite(fallback).all() and fallback.std() > 0.5


def test_mouth_motion_keeps_only_recent_pairs_and_last_patches():
    rng = np.random.default_rng(0)
    motion = MouthMotion(max_gap_s=0.5)
    for t in (0.0, 0.2, 0.4, 1.4, 1.6):  # a 1 s gap after 0.4: the face may have changed
        motion.add(7, t, rng.normal(size=PATCH_SHAPE).astype(np.float32))
    still = np.ones(PATCH_SHAPE, np.float32)
    motion.add(3, 0.0, still)
    motion.add(3, 0.2, still)
    times, values = motion.series(7)
    assert times.tolist() == [0.2, 0.4, 1.6]
    assert motion.intervals(7)[0].tolist() == [0.0, 0.2, 1.4]
    assert np.all(values > 0.5)
    assert motion.series(3)[1].tolist() == [0.0]
    assert motion.track_ids == [3, 7]
    assert motion.series(99)[0].size == 0


# ----- linking on synthetic motion series ------------------------------------------------------

def _turns(spec: dict[str, list[tuple[float, float]]]) -> Annotation:
    turns = Annotation(uri="synthetic")
    for speaker, spans in spec.items():
        for start, end in spans:
            turns[Segment(start, end)] = speaker
    return turns


def _alternating(n: int, turn_s: float, speakers: tuple[str, ...], gap_s: float = 0.6, start_s: float = 0.5):
    """Turns taking rounds: speaker k talks in turns k, k + len(speakers), ..."""
    spans: dict[str, list[tuple[float, float]]] = {s: [] for s in speakers}
    t = start_s
    for i in range(n):
        spans[speakers[i % len(speakers)]].append((t, t + turn_s))
        t += turn_s + gap_s
    return spans


def _talking(spans: list[tuple[float, float]], t: float) -> bool:
    return any(start <= t < end for start, end in spans)


def _add_track(motion: MouthMotion, track_id: int, rng, amplitude, start_s: float, end_s: float) -> None:
    """Random patches whose size of change is amplitude(t): fresh noise each sample."""
    for k in range(int(round((end_s - start_s) / STEP_S)) + 1):
        t = round(start_s + k * STEP_S, 3)
        motion.add(track_id, t, (amplitude(t) * rng.normal(size=PATCH_SHAPE)).astype(np.float32))


def _follows(spans, rng, quiet: float = 0.3):
    """A mouth that moves while its speaker talks (with some speech pauses), barely otherwise."""
    return lambda t: (1.0 if rng.random() > 0.2 else quiet) if _talking(spans, t) else quiet * rng.uniform(0.5, 1.5)


def _by_track(links: list[TrackLink]) -> dict[int, TrackLink]:
    return {link.track_id: link for link in links}


def test_clear_case_links_each_track_to_its_speaker():
    rng = np.random.default_rng(1)
    spans = _alternating(14, 3.0, ("agent", "customer"))
    motion = MouthMotion()
    _add_track(motion, 0, rng, _follows(spans["customer"], rng), 0.0, 50.0)
    _add_track(motion, 1, rng, _follows(spans["agent"], rng), 0.0, 50.0)
    links = _by_track(link_tracks(motion, _turns(spans)))
    assert links[0].speaker == "customer" and links[1].speaker == "agent"
    for link in links.values():
        assert link.score > 0.8 and 0.5 < link.confidence <= 1.0
        assert "mouth moves with" in link.evidence


def test_silent_track_never_links_even_to_a_speaker_without_a_face():
    """A muted observer next to two talking faces, while a third voice has no face on screen:
    the observer is the only face left for that voice, and must still stay unlinked."""
    rng = np.random.default_rng(2)
    spans = _alternating(18, 2.5, ("agent", "customer", "supervisor"))
    motion = MouthMotion()
    _add_track(motion, 0, rng, _follows(spans["agent"], rng), 0.0, 60.0)
    _add_track(motion, 1, rng, _follows(spans["customer"], rng), 0.0, 60.0)
    # The observer fidgets: slow head sway makes its patch change, unrelated to anyone's speech.
    _add_track(motion, 2, rng, lambda t: 0.5 + 0.4 * math.sin(2 * math.pi * t / 7.3) + 0.1 * rng.random(), 0.0, 60.0)
    links = _by_track(link_tracks(motion, _turns(spans)))
    assert links[0].speaker == "agent" and links[1].speaker == "customer"
    assert links[2].speaker is None and links[2].confidence == 0.0
    assert links[2].evidence.startswith("unlinked")


def test_two_faces_moving_with_one_speaker_are_left_unlinked():
    """Ambiguous: two faces on screen at once both fit the same voice; neither is guessed."""
    rng = np.random.default_rng(3)
    spans = _alternating(14, 3.0, ("agent", "customer"))
    motion = MouthMotion()
    _add_track(motion, 0, rng, _follows(spans["agent"], rng), 0.0, 50.0)
    _add_track(motion, 1, rng, _follows(spans["agent"], rng), 0.0, 50.0)
    links = _by_track(link_tracks(motion, _turns(spans)))
    assert links[0].speaker is None and links[1].speaker is None
    assert all("ahead of track" in link.evidence for link in links.values())


def test_overlapping_speech_still_links_right():
    """Every customer turn starts 1 s before the agent's ends: a third of the talk overlaps."""
    rng = np.random.default_rng(4)
    spans = _alternating(16, 3.0, ("agent", "customer"), gap_s=-1.0)
    assert any(_talking(spans["agent"], t) and _talking(spans["customer"], t) for t in np.arange(0, 40, 0.1))
    motion = MouthMotion()
    _add_track(motion, 0, rng, _follows(spans["agent"], rng), 0.0, 40.0)
    _add_track(motion, 1, rng, _follows(spans["customer"], rng), 0.0, 40.0)
    links = _by_track(link_tracks(motion, _turns(spans)))
    assert links[0].speaker == "agent" and links[1].speaker == "customer"


def test_no_link_to_a_speaker_who_is_never_active_in_the_tracks_span():
    rng = np.random.default_rng(5)
    spans = {"agent": [(1.0, 5.0), (9.0, 14.0), (18.0, 25.0)], "customer": [(5.5, 8.5), (14.5, 17.5)]}
    motion = MouthMotion()
    # This face appears after everyone stopped talking; its mouth moves anyway (chewing).
    _add_track(motion, 0, rng, lambda t: rng.uniform(0.2, 1.0), 30.0, 60.0)
    (link,) = link_tracks(motion, _turns(spans))
    assert link.speaker is None and math.isnan(link.score)
    assert "no speaker" in link.evidence


def test_too_few_samples_and_no_speakers_give_no_link():
    rng = np.random.default_rng(6)
    motion = MouthMotion()
    _add_track(motion, 0, rng, lambda t: 1.0, 0.0, 2.0)  # 10 samples
    (link,) = link_tracks(motion, _turns({"agent": [(0.0, 1.0)]}), min_samples=20)
    assert link.speaker is None and "too few samples" in link.evidence
    _add_track(motion, 1, rng, lambda t: 1.0, 0.0, 30.0)
    assert [lk.speaker for lk in link_tracks(motion, Annotation())] == [None, None]


def test_a_face_split_into_two_tracks_links_both_parts():
    """The tracker lost the agent's face at 25 s and gave it a new id: both fragments are the agent."""
    rng = np.random.default_rng(7)
    spans = _alternating(16, 3.0, ("agent", "customer"))
    motion = MouthMotion()
    _add_track(motion, 0, rng, _follows(spans["agent"], rng), 0.0, 25.0)
    _add_track(motion, 2, rng, _follows(spans["agent"], rng), 26.0, 55.0)
    _add_track(motion, 1, rng, _follows(spans["customer"], rng), 0.0, 55.0)
    links = _by_track(link_tracks(motion, _turns(spans)))
    assert [links[k].speaker for k in (0, 1, 2)] == ["agent", "customer", "agent"]


# ----- end to end on a generated call -------------------------------------------------------------

@pytest.fixture(scope="module")
def observed_call(tmp_path_factory):
    """A 3-tile gallery call (agent, customer, a fidgeting silent observer), decoded at 5 fps,
    faces detected and tracked, mouth motion measured."""
    from pipeline.stages.vision.face_detection import FaceDetector
    from pipeline.stages.vision.face_tracking import FaceTracker
    from pipeline.stages.vision.video_frames import sample_frames

    call = generate_video_call(tmp_path_factory.mktemp("linking"), "link-e2e", seed=11, n_tiles=3,
                               silent_tiles=1, fps=10, size=(480, 270))
    detector, tracker, motion = FaceDetector(threads=1), FaceTracker(), MouthMotion()
    centres: dict[int, list[tuple[float, float]]] = {}
    for frame in sample_frames(call.video_path, fps=5.0):
        faces = detector.detect(frame.rgb)
        grey = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
        for face, track_id in zip(faces, tracker.update(frame.t, faces)):
            motion.add(track_id, frame.t, mouth_patch(grey, face.landmarks, (face.x0, face.y0, face.x1, face.y1)))
            centres.setdefault(track_id, []).append(((face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2))
    return call, motion, centres


def test_generated_call_tracks_link_to_their_tiles_speakers(observed_call):
    call, motion, centres = observed_call
    reference = next(iter(load_rttm(call.rttm_path).values()))
    links = link_tracks(motion, reference)
    right, silent_linked = 0, 0
    for link in links:
        x, y = np.mean(centres[link.track_id], axis=0)
        tile = next(t for t in call.tiles if t.box[0] <= x < t.box[2] and t.box[1] <= y < t.box[3])
        right += link.speaker == tile.speaker  # None == None for the silent observer
        silent_linked += tile.silent and link.speaker is not None
    assert len(links) == len(call.tiles)  # one track per face: the tracker held on
    assert right / len(links) >= 0.9
    assert silent_linked == 0
