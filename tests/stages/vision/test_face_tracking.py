"""Face tracker: stable ids through motion and short misses, new ids after long gaps, no swaps."""

from __future__ import annotations

import pytest

from pipeline.stages.vision.face_detection import FaceBox
from pipeline.stages.vision.face_tracking import FaceTracker


def _face(x: float, y: float, side: float = 100.0, score: float = 0.99) -> FaceBox:
    return FaceBox(x, y, x + side, y + side, score, ())


def _iou(a: FaceBox, b: FaceBox) -> float:
    iw = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    ih = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    return iw * ih / (a.area + b.area - iw * ih)


def test_a_moving_face_keeps_its_id():
    tracker = FaceTracker()
    ids = [tracker.update(0.2 * k, [_face(100 + 15 * k, 80 + 5 * k)]) for k in range(30)]
    assert ids == [[0]] * 30
    (summary,) = tracker.summaries()
    assert (summary.first_s, summary.last_s, summary.n_detections) == (0.0, pytest.approx(5.8), 30)


def test_fast_diagonal_motion_is_followed_by_centre_distance():
    # Each step moves 0.33 sides in x and y: IoU falls below min_iou, the centre moves 0.47 sides.
    steps = [_face(100 + 33 * k, 100 + 33 * k) for k in range(6)]
    assert _iou(steps[0], steps[1]) < 0.3
    tracker = FaceTracker(min_iou=0.3, max_center_shift=0.5)
    assert [tracker.update(0.5 * k, [f]) for k, f in enumerate(steps)] == [[0]] * 6
    # Without the fallback, every step would start a new track.
    no_fallback = FaceTracker(min_iou=0.3, max_center_shift=0.0)
    assert [no_fallback.update(0.5 * k, [f]) for k, f in enumerate(steps)] == [[k] for k in range(6)]


def test_survives_a_short_miss_but_not_a_long_gap():
    tracker = FaceTracker(max_gap_s=1.0)
    assert tracker.update(0.0, [_face(100, 100)]) == [0]
    assert tracker.update(0.4, []) == []
    assert tracker.update(0.8, []) == []
    assert tracker.update(1.0, [_face(104, 100)]) == [0]  # unseen for 1.0 s: still open
    assert tracker.update(3.5, [_face(104, 100)]) == [1]  # unseen for 2.5 s: a new track
    first, second = tracker.summaries()
    assert (first.track_id, first.last_s, first.n_detections) == (0, 1.0, 2)
    assert (second.track_id, second.first_s, second.n_detections) == (1, 3.5, 1)


def test_crossing_faces_keep_their_ids():
    # A walks right, B walks left, 0.3 sides apart vertically: they overlap as they cross, and a
    # swapped assignment would overlap enough to be allowed, so the assignment has to choose.
    tracker = FaceTracker()
    for k in range(15):
        a = _face(100 + 20 * k, 100)
        b = _face(380 - 20 * k, 130)
        if k % 2:  # detection order must not matter
            assert tracker.update(0.1 * k, [b, a]) == [1, 0]
        else:
            assert tracker.update(0.1 * k, [a, b]) == [0, 1]
    a_summary, b_summary = tracker.summaries()
    assert a_summary.mean_box[0] == pytest.approx(100 + 20 * 7)
    assert b_summary.mean_box[1] == pytest.approx(130)


def test_adjacent_faces_moving_together_keep_their_ids():
    # Touching boxes, moving 0.4 sides a step: each new box also overlaps the neighbour's old one.
    tracker = FaceTracker()
    assert tracker.update(0.0, [_face(100, 100), _face(200, 100)]) == [0, 1]
    for k in range(1, 10):
        left, right = _face(100 + 40 * k, 100), _face(200 + 40 * k, 100)
        assert tracker.update(0.2 * k, [right, left]) == [1, 0]


def test_a_small_face_does_not_inherit_a_large_faces_id():
    tracker = FaceTracker()
    assert tracker.update(0.0, [_face(100, 100, side=200)]) == [0]
    # A face a fifth the size, centred where the large one was: close centres, unlike sizes.
    assert tracker.update(0.2, [_face(180, 180, side=40)]) == [1]


def test_ids_are_never_reused():
    tracker = FaceTracker(max_gap_s=0.5)
    seen = []
    for k in range(20):
        # Every other second a face appears somewhere new and lingers briefly.
        ids = tracker.update(float(k), [_face(50 * (k % 4), 0)] if k % 2 == 0 else [])
        seen.extend(ids)
    assert seen == list(range(10))
    assert [s.track_id for s in tracker.summaries()] == list(range(10))


def test_summary_is_the_running_mean():
    tracker = FaceTracker()
    tracker.update(0.0, [_face(100, 100, score=0.9)])
    tracker.update(0.5, [_face(110, 104, score=0.7)])
    (summary,) = tracker.summaries()
    assert summary.mean_box == pytest.approx((105.0, 102.0, 205.0, 202.0))
    assert summary.mean_score == pytest.approx(0.8)


def test_time_must_not_go_backwards():
    tracker = FaceTracker()
    tracker.update(1.0, [])
    with pytest.raises(ValueError):
        tracker.update(0.5, [])
