"""MAE-DFER (LGI-Former): the authors' architecture and key layout, checkpoint loading, torch == ONNX,
and the clip runtime. Weights are random (models/build_test_mae_dfer_checkpoint.py)."""

import dataclasses

import numpy as np
import pytest
import torch
from model_scripts import load_model_script
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from pipeline.storage import object_store
from pipeline.storage.model_store import resolve_model_path
from pipeline.networks.lgi_former import (
    GeneralAttention,
    LGIFormer,
    LGIFormerConfig,
    multiply_accumulates,
)
from pipeline.networks.mae_dfer_checkpoint import (
    CheckpointMismatch,
    load_checkpoint,
    read_checkpoint,
    remap_state_dict,
)
from pipeline.settings import ModelStoreSettings, Settings
from pipeline.stages.vision import face_expression_clips as fec

builder = load_model_script("build_test_mae_dfer_checkpoint")
SMALL = builder.TEST_CONFIG  # token grid (2, 4, 4), regions (2, 2, 1) of 1x2x4 tokens

# From the authors' logs/dfew.out (github.com/sunlicai/MAE-DFER): "number of params: 84878343",
# "Number of local regions: 8 (size=[4, 2, 1])", and the parameter names of each block.
AUTHORS_PARAMETER_COUNT = 84_878_343
AUTHORS_BLOCK_KEYS = (
    [
        f"{attn}.{leaf}"
        for attn in ("first_attn", "second_attn", "third_attn")
        for leaf in ("q.weight", "kv.weight", "q_bias", "v_bias", "proj.weight", "proj.bias")
    ]
    + [
        f"{norm}.{leaf}"
        for norm in ("first_attn_norm0", "second_attn_norm0", "third_attn_norm0", "third_attn_norm1", "norm2")
        for leaf in ("weight", "bias")
    ]
    + ["mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
)
AUTHORS_TOP_KEYS = [
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "lg_region_tokens",
    "fc_norm.weight",
    "fc_norm.bias",
    "head.weight",
    "head.bias",
]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(config: LGIFormerConfig, seed: int = 0) -> LGIFormer:
    model = LGIFormer(config)
    model.load_state_dict(builder.random_state(config, seed))
    return model.eval()


def _clips(n: int, config: LGIFormerConfig = SMALL, seed: int = 0) -> torch.Tensor:
    return torch.randn(
        n, 3, config.num_frames, config.image_size, config.image_size, generator=torch.Generator().manual_seed(seed)
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A test checkpoint (pos_embed on a 3x3 grid, model grid 4x4) exported through the runtime's
    own .pth path: onnx_path_for -> export_checkpoint_onnx (which checks torch == ONNX to 1e-4)."""
    root = tmp_path_factory.mktemp("mae_dfer")
    checkpoint = builder.build_test_checkpoint(root / "checkpoint-99.pth", pos_embed_side=3)
    settings = dataclasses.replace(Settings(), model_store=ModelStoreSettings(cache_dir=str(root / "cache")))
    onnx_path = fec.onnx_path_for(str(checkpoint), settings, SMALL)
    return checkpoint, onnx_path, settings


def test_full_size_model_has_the_authors_parameter_names_shapes_and_count():
    config = LGIFormerConfig()
    with torch.device("meta"):
        model = LGIFormer(config)
    state = model.state_dict()
    expected = set(AUTHORS_TOP_KEYS) | {f"blocks.{i}.{key}" for i in range(16) for key in AUTHORS_BLOCK_KEYS}
    assert set(state) == expected
    assert sum(p.numel() for p in model.parameters()) == AUTHORS_PARAMETER_COUNT
    assert config.region_grid == (4, 2, 1) and config.tokens_per_region == 100
    shapes = {
        k: tuple(state[k].shape)
        for k in (
            "patch_embed.proj.weight",
            "lg_region_tokens",
            "blocks.0.first_attn.kv.weight",
            "blocks.15.mlp.fc1.weight",
            "head.weight",
        )
    }
    assert shapes == {
        "patch_embed.proj.weight": (512, 3, 2, 16, 16),
        "lg_region_tokens": (8, 512),
        "blocks.0.first_attn.kv.weight": (1024, 512),
        "blocks.15.mlp.fc1.weight": (2048, 512),
        "head.weight": (7, 512),
    }


def test_multiply_accumulates_match_torch_flop_counter():
    model = _model(SMALL)
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):  # the math kernel's matmuls are visible to the counter
        model(_clips(1))
    assert counter.get_total_flops() == 2 * multiply_accumulates(SMALL)


def test_attention_is_the_authors_formula():
    torch.manual_seed(0)
    attention = GeneralAttention(dim=16, num_heads=2)
    for p in attention.parameters():
        torch.nn.init.normal_(p, std=0.3)
    query, context = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    q = query @ attention.q.weight.T + attention.q_bias
    k_weight, v_weight = attention.kv.weight.chunk(2)
    k, v = context @ k_weight.T, context @ v_weight.T + attention.v_bias  # the key has no bias
    heads = lambda t: t.unflatten(-1, (2, 8)).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 8**0.5, dim=-1)
    expected = attention.proj((weights @ heads(v)).transpose(1, 2).flatten(2))
    torch.testing.assert_close(attention(query, context), expected, atol=1e-5, rtol=1e-5)


def _reference_forward(model: LGIFormer, clips: torch.Tensor) -> torch.Tensor:
    """The paper's block written with explicit region index sets (no reshapes), using the model's layers."""
    config = model.config
    tokens = model.patch_embed(clips) + model.pos_embed
    t, h, w = np.unravel_index(np.arange(config.num_tokens), config.token_grid)
    rt, rh, rw = config.region_size
    region_of = np.ravel_multi_index((t // rt, h // rh, w // rw), config.region_grid)
    members = [torch.from_numpy(np.flatnonzero(region_of == r)) for r in range(config.num_regions)]
    regions, local = model.lg_region_tokens.expand(len(clips), -1, -1).clone(), tokens
    for block in model.blocks:
        new_regions, new_local = regions.clone(), local.clone()
        for r, idx in enumerate(members):
            seq = torch.cat((regions[:, r : r + 1], local[:, idx]), dim=1)
            normed = block.first_attn_norm0(seq)
            seq = seq + block.first_attn(normed, normed)
            new_regions[:, r], new_local[:, idx] = seq[:, 0], seq[:, 1:]
        regions, local = new_regions, new_local
        normed = block.second_attn_norm0(regions)
        regions = regions + block.second_attn(normed, normed)
        local = local + block.third_attn(block.third_attn_norm0(local), block.third_attn_norm1(regions))
        regions, local = regions + block.mlp(block.norm2(regions)), local + block.mlp(block.norm2(local))
    pooled = {"region": regions, "org": local, "all": torch.cat((regions, local), dim=1)}[config.pooling].mean(1)
    return model.head(model.fc_norm(pooled))


@pytest.mark.parametrize("pooling", ["region", "org", "all"])
def test_forward_matches_an_explicit_per_region_reference(pooling):
    model = _model(dataclasses.replace(SMALL, pooling=pooling))
    clips = _clips(2)
    with torch.no_grad():
        torch.testing.assert_close(model(clips), _reference_forward(model, clips), atol=1e-5, rtol=1e-5)


def test_checkpoint_in_the_authors_layout_loads_every_weight(tmp_path):
    path = builder.build_test_checkpoint(tmp_path / "ckpt.pth", pos_embed_side=3)
    raw, container = read_checkpoint(path)
    remapped = remap_state_dict(raw, SMALL, container)
    assert remapped.container_key == "model" and remapped.stripped_prefixes == ("encoder.",)
    assert set(remapped.ignored_keys) == set(builder.pretraining_extras(SMALL))  # decoder, mask token, encoder norm
    assert remapped.pos_embed_grid == (2, 3, 3)

    model = load_checkpoint(str(path), SMALL)
    assert model.config.learnable_pos_embed and not model.training
    loaded = model.state_dict()
    assert set(loaded) == {
        k.removeprefix("encoder.")
        for k in raw
        if k.startswith("encoder.") and k not in ("encoder.norm.weight", "encoder.norm.bias")
    }
    for key, value in raw.items():
        if key.startswith("encoder.") and key.removeprefix("encoder.") in loaded and key != "encoder.pos_embed":
            assert torch.equal(loaded[key.removeprefix("encoder.")], value), key
    # pos_embed: each frame's 3x3 grid resized bicubically to 4x4, tokens in (t, h, w) order.
    grid = raw["encoder.pos_embed"].reshape(2, 3, 3, SMALL.embed_dim).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(loaded["pos_embed"], expected.permute(0, 2, 3, 1).reshape(1, 32, SMALL.embed_dim))

    plain = load_checkpoint(str(builder.build_test_checkpoint(tmp_path / "plain.pth")), SMALL)
    assert (
        not plain.config.learnable_pos_embed and "pos_embed" not in plain.state_dict()
    )  # fixed sine-cosine, as the authors


def test_checkpoints_that_do_not_fit_fail_and_name_the_keys(tmp_path):
    path = builder.build_test_checkpoint(tmp_path / "ckpt.pth")
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["model"]["encoder.blocks.1.mlp.fc2.bias"]
    checkpoint["model"]["encoder.blocks.1.extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / "broken.pth")
    with pytest.raises(
        CheckpointMismatch,
        match=r"missing \(1\): blocks\.1\.mlp\.fc2\.bias[\s\S]*unexpected \(1\): blocks\.1\.extra\.weight",
    ):
        load_checkpoint(str(tmp_path / "broken.pth"), SMALL)
    with pytest.raises(CheckpointMismatch, match=r"head\.weight: checkpoint \(7, 64\) vs model \(11, 64\)"):
        load_checkpoint(str(path), dataclasses.replace(SMALL, num_classes=11))
    pretrained_only = {
        k: v
        for k, v in torch.load(path, weights_only=False)["model"].items()
        if not k.startswith(("encoder.head", "encoder.fc_norm"))
    }
    torch.save({"model": pretrained_only}, tmp_path / "pretrained.pth")
    with pytest.raises(CheckpointMismatch, match="fc_norm.bias, fc_norm.weight, head.bias, head.weight"):
        load_checkpoint(str(tmp_path / "pretrained.pth"), SMALL)


def test_onnx_matches_torch_with_a_dynamic_batch(exported):
    import onnxruntime as ort

    checkpoint, onnx_path, settings = exported
    assert fec.onnx_path_for(str(checkpoint), settings, SMALL) == onnx_path  # exported once, then cached
    model = load_checkpoint(str(checkpoint), SMALL)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 3):
        clips = _clips(batch, seed=batch)
        with torch.no_grad():
            expected = model(clips).numpy()
        (logits,) = session.run(["logits"], {"clips": clips.numpy()})
        assert logits.shape == (batch, 7)
        assert np.abs(logits - expected).max() <= 1e-4
        assert np.ptp(expected, axis=1).min() > 0.5  # logits far from constant: the check has teeth


def test_runtime_returns_probabilities_with_the_authors_normalisation(exported):
    checkpoint, onnx_path, _ = exported
    runtime = fec.ClipExpressionModel(onnx_path, "cpu", batch_size=2, threads=1)
    assert runtime.classes == fec.CLASSES and runtime.providers == ["CPUExecutionProvider"]
    with open(checkpoint, "rb") as fh:
        import hashlib

        assert hashlib.file_digest(fh, "sha256").hexdigest()[:16] in runtime.model_version()
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, size=(3, 4, 64, 64, 3), dtype=np.uint8)
    probs = runtime.predict(clips)
    normalised = (clips / 255.0 - np.array(fec.INPUT_MEAN)) / np.array(fec.INPUT_STD)
    with torch.no_grad():
        logits = load_checkpoint(str(checkpoint), SMALL)(torch.from_numpy(normalised.transpose(0, 4, 1, 2, 3)).float())
    np.testing.assert_allclose(probs, torch.softmax(logits, dim=1).numpy(), atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert runtime.predict(clips[:0]).shape == (0, 7)
    with pytest.raises(ValueError, match="uint8"):
        runtime.predict(clips.astype(np.float32))


def test_providers_prefer_cuda_when_onnxruntime_has_it(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert fec.execution_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        fec.execution_providers("cuda")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert fec.execution_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert fec.execution_providers("cpu") == ["CPUExecutionProvider"]


def test_clip_from_crops_samples_evenly_pads_and_resizes():
    crops = [np.full((90 + i, 70, 3), i, np.uint8) for i in range(40)]  # crop i is filled with value i
    clip = fec.clip_from_crops(crops)
    assert clip.shape == (16, 160, 160, 3) and clip.dtype == np.uint8
    assert clip[:, 0, 0, 0].tolist() == np.linspace(0, 39, 16).astype(int).tolist()
    short = fec.clip_from_crops(crops[:5])
    assert short[:, 80, 80, 0].tolist() == [0, 1, 2, 3, 4] + [4] * 11
    assert fec.clip_from_crops([np.full((160, 160, 3), 7, np.uint8)] * 16).max() == 7
    with pytest.raises(ValueError):
        fec.clip_from_crops([np.zeros((10, 10), np.uint8)])


def test_s3_checkpoint_loads_through_the_model_store(settings, tmp_path):
    settings = dataclasses.replace(settings, model_store=ModelStoreSettings(cache_dir=str(tmp_path / "cache")))
    path = builder.build_test_checkpoint(tmp_path / "ckpt.pth")
    bucket = settings.s3.curated_bucket
    object_store.put_bytes(object_store.s3_client(settings.s3), bucket, "models/mae-dfer/dfew-fold1.pth", path.read_bytes())
    remote = load_checkpoint(resolve_model_path(f"s3://{bucket}/models/mae-dfer/dfew-fold1.pth", settings), SMALL)
    local = load_checkpoint(str(path), SMALL)
    assert all(torch.equal(remote.state_dict()[k], v) for k, v in local.state_dict().items())
    with pytest.raises(FileNotFoundError, match="resolve with pipeline.storage.model_store"):
        load_checkpoint(f"s3://{bucket}/models/mae-dfer/dfew-fold1.pth", SMALL)
