"""Transcription backends (faster-whisper, openai-whisper) and the CTranslate2 -> openai-whisper
converter in models/.

The converter is checked twice against CTranslate2's own runtime: on small random models that
CTranslate2's serializer writes (int8, float16, float32), and on the bundled tiny.en. Then both
backends transcribe the same generated call with the converted tiny.en.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import functools
import gzip
import json
import re
from pathlib import Path
from types import SimpleNamespace

import ctranslate2
import numpy as np
import pytest
import torch
import whisper
from model_scripts import load_model_script
from pyannote.core import Segment, Timeline
from whisper.model import ModelDimensions, Whisper
from whisper.tokenizer import get_tokenizer

from pipeline.storage import object_store
from pipeline.devtools.evaluation import load_stm, stm_text, word_error_rate
from pipeline.storage.media import decode_audio
from pipeline.storage.model_store import resolve_model_path
from pipeline.settings import ModelStoreSettings, TranscriptionSettings, VadSettings
from pipeline.stages.audio import transcription
from pipeline.stages.audio.speech_activity import detect_speech
from pipeline.stages.audio.transcription import embedded_model_path
from pipeline.devtools.synth.calls import generate_call
from pipeline.records import Word

SR = 16000


convert_ct2 = load_model_script("convert_ct2_to_whisper")


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_en_checkpoint(tmp_path_factory) -> Path:
    """The bundled tiny.en converted once per session (never committed)."""
    return convert_ct2.convert(embedded_model_path(), tmp_path_factory.mktemp("whisper") / "tiny.en.pt")


@pytest.fixture(scope="session")
def call(tmp_path_factory):
    """A generated two-speaker telephone call at 20 dB SNR, decoded, with its speech regions."""
    generated = generate_call(tmp_path_factory.mktemp("call"), "c", seed=3, n_speakers=2, snr_db=20.0)
    audio = decode_audio(generated.audio_path)
    speech = detect_speech(audio.samples, audio.sample_rate, VadSettings())
    return SimpleNamespace(reference=stm_text(load_stm(generated.stm_path)), audio=audio, speech=speech)


def _settings(backend: str, checkpoint: Path | None = None, **changes) -> TranscriptionSettings:
    path = str(checkpoint) if backend == "openai-whisper" else None
    return TranscriptionSettings(backend=backend, model_path=path, device="cpu", **changes)


def _text(words: list[Word]) -> str:
    return " ".join(w.text.strip() for w in words)


# --- small random models, written by CTranslate2's own serializer --------------------------

SMALL_DIMS = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
                             n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2)
SMALL_HEADS = [(1, 0), (1, 1)]


def _random_whisper(seed: int = 0) -> Whisper:
    torch.manual_seed(seed)
    model = Whisper(SMALL_DIMS)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.1 if p.ndim == 1 else 0.2)
    return model.eval()


def _ct2_spec(model: Whisper):
    """The CTranslate2 spec of an openai-whisper model: the inverse of the converter's mapping,
    written independently here (q/k/v fused, zero key bias, as CTranslate2's converter does)."""
    from ctranslate2.specs import whisper_spec

    d = model.dims
    sd = {k: v.float().numpy().copy() for k, v in model.state_dict().items()}  # CT2 quantises in place
    spec = whisper_spec.WhisperSpec(d.n_audio_layer, d.n_audio_head, d.n_text_layer, d.n_text_head)

    def linear(s, p):
        s.weight, s.bias = sd[p + ".weight"], sd[p + ".bias"]

    def norm(s, p):
        s.gamma, s.beta = sd[p + ".weight"], sd[p + ".bias"]

    def fused(s, p, parts):
        s.weight = np.concatenate([sd[f"{p}.{x}.weight"] for x in parts])
        s.bias = np.concatenate([sd.get(f"{p}.{x}.bias", np.zeros(sd[f"{p}.{x}.weight"].shape[0], np.float32)) for x in parts])

    def ffn(s, p):
        norm(s.layer_norm, p + ".mlp_ln")
        linear(s.linear_0, p + ".mlp.0")
        linear(s.linear_1, p + ".mlp.2")

    enc, dec = spec.encoder, spec.decoder
    linear(enc.conv1, "encoder.conv1")
    linear(enc.conv2, "encoder.conv2")
    enc.position_encodings.encodings = sd["encoder.positional_embedding"]
    norm(enc.layer_norm, "encoder.ln_post")
    for i, layer in enumerate(enc.layer):
        p = f"encoder.blocks.{i}"
        norm(layer.self_attention.layer_norm, p + ".attn_ln")
        fused(layer.self_attention.linear[0], p + ".attn", ("query", "key", "value"))
        linear(layer.self_attention.linear[1], p + ".attn.out")
        ffn(layer.ffn, p)
    dec.embeddings.weight = sd["decoder.token_embedding.weight"]
    dec.projection.weight = sd["decoder.token_embedding.weight"]
    dec.position_encodings.encodings = sd["decoder.positional_embedding"]
    norm(dec.layer_norm, "decoder.ln")
    for i, layer in enumerate(dec.layer):
        p = f"decoder.blocks.{i}"
        norm(layer.self_attention.layer_norm, p + ".attn_ln")
        fused(layer.self_attention.linear[0], p + ".attn", ("query", "key", "value"))
        linear(layer.self_attention.linear[1], p + ".attn.out")
        norm(layer.attention.layer_norm, p + ".cross_attn_ln")
        linear(layer.attention.linear[0], p + ".cross_attn.query")
        fused(layer.attention.linear[1], p + ".cross_attn", ("key", "value"))
        linear(layer.attention.linear[2], p + ".cross_attn.out")
        ffn(layer.ffn, p)
    spec.config.suppress_ids, spec.config.suppress_ids_begin, spec.config.lang_ids = [], [220, 50256], []
    spec.config.alignment_heads = SMALL_HEADS
    spec.register_vocabulary((embedded_model_path() / "vocabulary.txt").read_text().splitlines())
    return spec


def _save_ct2(model: Whisper, directory: Path, quantization: str) -> None:
    spec = _ct2_spec(model)
    spec.validate()
    spec.optimize(quantization=quantization)
    directory.mkdir(exist_ok=True)
    spec.save(str(directory))


def _load(checkpoint: dict) -> Whisper:
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])  # strict: every name mapped, none extra
    return model.eval()


def _token_probs(model: Whisper, mel: torch.Tensor, text_tokens: list[int]) -> np.ndarray:
    """P(each text token | audio, previous tokens) under an openai-whisper model."""
    tok = get_tokenizer(False)
    tokens = torch.tensor([*tok.sot_sequence, tok.no_timestamps, *text_tokens, tok.eot])
    with torch.no_grad():
        logits = model(mel, tokens[None])[0]
    probs = logits[len(tok.sot_sequence) :, : tok.eot].softmax(-1)
    return probs[np.arange(len(text_tokens)), text_tokens].numpy()


def _ct2_token_probs(ct2_model, mel: torch.Tensor, text_tokens: list[int]) -> np.ndarray:
    tok = get_tokenizer(False)
    result = ct2_model.align(ctranslate2.StorageView.from_array(mel.numpy()), list(tok.sot_sequence), [text_tokens], mel.shape[-1])
    return np.array(result[0].text_token_probs)


def _heads(dump: bytes, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    mask = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool).reshape(n_layers, n_heads)
    return [tuple(map(int, x)) for x in np.argwhere(mask)]


# --- the converter -------------------------------------------------------------------------


@pytest.mark.parametrize("quantization", ["int8", "float16", "float32"])
def test_converter_reads_back_what_ctranslate2_wrote(tmp_path, quantization):
    original = _random_whisper()
    _save_ct2(original, tmp_path, quantization)

    name, variables = convert_ct2.read_ct2_model(tmp_path / "model.bin")
    assert name == "WhisperSpec" and not any(k.endswith("weight_scale") for k in variables)
    checkpoint = convert_ct2.whisper_checkpoint(variables, json.loads((tmp_path / "config.json").read_text()))
    converted = _load(checkpoint)
    assert checkpoint["dims"] == dataclasses.asdict(SMALL_DIMS)
    assert _heads(checkpoint["alignment_heads"], 2, 2) == SMALL_HEADS

    # Weights come back exactly (float32), rounded (float16) or within half an int8 step per row.
    for key, want in original.state_dict().items():
        got = converted.state_dict()[key].float()
        if quantization == "int8" and want.ndim >= 2 and "positional" not in key:  # quantised per row
            step = want.flatten(1).abs().amax(dim=1) / 127
            tolerance = (step / 2 + 1e-6).reshape((-1,) + (1,) * (want.ndim - 1))
        else:
            tolerance = {"float32": 0.0, "float16": 1e-3, "int8": 1e-3}[quantization] * want.abs().max().clamp(min=1)
        assert torch.all((got - want).abs() <= tolerance), key

    # And CTranslate2's runtime on its own file computes what the converted model computes.
    ct2_model = ctranslate2.models.Whisper(str(tmp_path), compute_type="float32")
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    encoded = np.array(ct2_model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    with torch.no_grad():
        assert np.abs(encoded - converted.encoder(mel).numpy()).max() < 1e-3
    text = get_tokenizer(False).encode(" hello there, how are you doing today")
    np.testing.assert_allclose(_ct2_token_probs(ct2_model, mel, text), _token_probs(converted, mel, text), rtol=1e-3, atol=1e-6)


def test_reader_rejects_an_unknown_binary_version(tmp_path):
    (tmp_path / "model.bin").write_bytes((99).to_bytes(4, "little"))
    with pytest.raises(ValueError, match="binary version 99"):
        convert_ct2.read_ct2_model(tmp_path / "model.bin")


def test_converted_tiny_en_is_the_bundled_model(tiny_en_checkpoint, call):
    checkpoint = torch.load(tiny_en_checkpoint, weights_only=True)
    assert checkpoint["dims"] == {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
                                  "n_audio_layer": 4, "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384,
                                  "n_text_head": 6, "n_text_layer": 4}
    # The alignment heads from the CTranslate2 config are the ones openai-whisper ships for tiny.en.
    assert _heads(checkpoint["alignment_heads"], 4, 6) == _heads(whisper._ALIGNMENT_HEADS["tiny.en"], 4, 6)

    model = _load(checkpoint)
    ct2_model = ctranslate2.models.Whisper(str(embedded_model_path()), compute_type="float32")
    clip = torch.from_numpy(call.audio.samples[: 30 * SR].copy())
    mel = whisper.pad_or_trim(whisper.log_mel_spectrogram(clip), 3000)[None]
    tok = get_tokenizer(False)
    # Greedy decoding of the same 30 s gives the same tokens in both runtimes ...
    options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False)
    ours = whisper.decode(model, mel[0], options).tokens
    theirs = ct2_model.generate(ctranslate2.StorageView.from_array(mel.numpy()),
                                [[*tok.sot_sequence, tok.no_timestamps]], beam_size=1)[0].sequences_ids[0]
    assert len(ours) > 20 and ours == theirs
    # ... with the same probabilities.
    np.testing.assert_allclose(_ct2_token_probs(ct2_model, mel, ours), _token_probs(model, mel, ours), atol=2e-3)


# --- the backends --------------------------------------------------------------------------


def test_backends_transcribe_a_call_alike(tiny_en_checkpoint, call):
    samples, duration = call.audio.samples, call.audio.duration_s
    results = {}
    for backend in transcription.BACKENDS:
        words = transcription.transcribe(samples, SR, call.speech, _settings(backend, tiny_en_checkpoint))
        results[backend] = words
        assert words and all(type(w) is Word for w in words)
        assert all(0.0 <= w.start <= w.end <= duration and 0.0 <= w.probability <= 1.0 for w in words)
        assert all(a.start <= b.start for a, b in zip(words, words[1:])), f"{backend}: words out of order"
        # Words come from speech (plus the padding around it), never from the silence between.
        padded = call.speech.support(collar=0.0)
        assert all(any(s.start - 0.6 <= (w.start + w.end) / 2 <= s.end + 0.6 for s in padded) for w in words)
    wer = {b: word_error_rate(call.reference, _text(w)) for b, w in results.items()}
    assert all(v <= 0.35 for v in wer.values()), wer
    assert abs(wer["faster-whisper"] - wer["openai-whisper"]) <= 0.05, wer
    # The word lists mostly agree, and the words they share are placed at about the same time.
    fw, ow = results["faster-whisper"], results["openai-whisper"]
    assert word_error_rate(_text(fw), _text(ow)) <= 0.12
    matcher = difflib.SequenceMatcher(None, [w.text.strip().lower() for w in fw], [w.text.strip().lower() for w in ow], autojunk=False)
    shared = [(fw[b.a + k], ow[b.b + k]) for b in matcher.get_matching_blocks() for k in range(b.size)]
    assert len(shared) >= 0.85 * len(fw)
    assert np.mean([abs(a.start - b.start) <= 0.5 for a, b in shared]) >= 0.95


def test_openai_whisper_batches_and_skips_silence(tiny_en_checkpoint, call):
    """Two windows beam-searched in one batch (openai-whisper's own batched beam search fails
    there); no speech regions -> no words."""
    samples = call.audio.samples[: 40 * SR]
    speech = call.speech.crop(Segment(0, 40))
    settings = _settings("openai-whisper", tiny_en_checkpoint, batch_size=2, beam_size=2, temperatures=(0.0,))
    assert len(transcription._windows(samples, transcription._speech_pieces(len(samples), speech, 0.5))) == 2
    words = transcription.transcribe(samples, SR, speech, settings)
    assert len(words) > 40 and words[-1].end <= 40.0
    reference_words = len(call.reference.split())
    assert len(words) < reference_words  # only the first 40 s
    assert transcription.transcribe(samples, SR, Timeline(), settings) == []


def test_checkpoint_by_name_is_looked_up_in_the_download_root_never_downloaded(tmp_path, tiny_en_checkpoint):
    (tmp_path / "tiny.en.pt").symlink_to(tiny_en_checkpoint)
    by_name = TranscriptionSettings(backend="openai-whisper", whisper_download_root=str(tmp_path))
    assert transcription.local_model_path(by_name) == tmp_path / "tiny.en.pt"
    assert transcription.model_version(by_name) == f"tiny.en; openai-whisper=={whisper.__version__}"

    missing = dataclasses.replace(by_name, model_path="base.en")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "base.en.pt"))):
        transcription.transcribe(np.zeros(SR, np.float32), SR, Timeline(), missing)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        transcription.local_model_path(dataclasses.replace(by_name, model_path=str(tmp_path / "nope.pt")))
    with pytest.raises(FileNotFoundError, match="model.bin"):
        transcription.local_model_path(TranscriptionSettings(model_path=str(tmp_path)))


def test_unknown_backend_is_refused_by_name():
    settings = TranscriptionSettings(backend="whisper-cpp")
    with pytest.raises(ValueError, match="whisper-cpp"):
        transcription.transcribe(np.zeros(SR, np.float32), SR, Timeline([Segment(0, 1)]), settings)
    with pytest.raises(ValueError, match="whisper-cpp"):
        transcription.model_version(settings)


@pytest.mark.parametrize("backend", transcription.BACKENDS)
def test_s3_model_paths_go_through_the_model_store(tmp_path, settings, backend):
    """A small random model in the (moto) model store, fetched by the resolver the caller passes."""
    settings = dataclasses.replace(settings, model_store=ModelStoreSettings(cache_dir=str(tmp_path / "cache")))
    client, bucket = object_store.s3_client(settings.s3), settings.s3.curated_bucket
    model = _random_whisper()
    if backend == "openai-whisper":
        local = tmp_path / "small.pt"  # named like OpenAI's "small", whose alignment heads do not fit
        torch.save({"dims": dataclasses.asdict(model.dims), "model_state_dict": model.state_dict()}, local)
        object_store.put_bytes(client, bucket, "models/whisper/small.pt", local.read_bytes())
        uri = f"s3://{bucket}/models/whisper/small.pt"
    else:
        _save_ct2(model, tmp_path / "ct2", "float16")
        (tmp_path / "ct2" / "tokenizer.json").write_bytes((embedded_model_path() / "tokenizer.json").read_bytes())
        for f in (tmp_path / "ct2").iterdir():
            object_store.put_bytes(client, bucket, f"models/ct2-small/{f.name}", f.read_bytes())
        uri = f"s3://{bucket}/models/ct2-small/"
    stage = dataclasses.replace(_settings(backend), model_path=uri, temperatures=(0.0,), beam_size=1)
    samples = np.random.default_rng(0).normal(0, 0.1, 3 * SR).astype(np.float32)
    speech = Timeline([Segment(0.5, 2.5)])

    with pytest.raises(ValueError, match="model store"):
        transcription.transcribe(samples, SR, speech, stage)
    fetched = []

    def resolve(path: str) -> Path:
        fetched.append(path)
        return resolve_model_path(path, settings)

    words = transcription.transcribe(samples, SR, speech, stage, resolve=resolve)
    assert fetched == [uri]
    assert all(type(w) is Word and 0.0 <= w.start <= w.end <= 3.0 for w in words)  # random weights: any text


# --- pure parts ----------------------------------------------------------------------------


def test_speech_is_padded_joined_and_cut_into_full_windows_at_quiet_points():
    samples = np.random.default_rng(0).normal(0, 0.1, 100 * SR).astype(np.float32)
    for quiet in (27.0, 64.0):  # two quiet moments of 0.2 s, where windows should end
        samples[int(quiet * SR) : int((quiet + 0.2) * SR)] = 0.0
    speech = Timeline([Segment(1, 10), Segment(10.5, 20), Segment(22, 29), Segment(40, 80)])
    pieces = transcription._speech_pieces(len(samples), speech, pad_s=0.5)
    assert pieces == [(SR // 2, 20.5 * SR), (21.5 * SR, 29.5 * SR), (39.5 * SR, 80.5 * SR)]

    windows = transcription._windows(samples, pieces)
    lengths = [len(w.audio) for w in windows]
    assert len(windows) == 3 and all(25 * SR <= n <= 30 * SR for n in lengths[:-1])
    # Every sample once, in order.
    assert np.array_equal(np.concatenate([w.audio for w in windows]), np.concatenate([samples[s:e] for s, e in pieces]))
    assert windows[0].pieces[0] == pieces[0]  # a window spans regions ...
    assert 27.0 * SR <= windows[0].pieces[-1][1] <= 27.2 * SR  # ... and ends where it is quiet
    assert 64.0 * SR <= windows[1].pieces[-1][1] <= 64.2 * SR


def test_word_times_map_back_through_the_piece_they_fall_in():
    joined = transcription._JoinedAudio(np.zeros(20 * SR, np.float32), [(1 * SR, 3 * SR), (10 * SR, 12 * SR)])
    assert joined.word(0.5, 0.9, " a", 0.9) == Word(1.5, 1.9, " a", 0.9)
    assert joined.word(2.2, 2.6, " b", 0.8) == Word(10.2, 10.6, " b", 0.8)
    # A word whose start lies before its piece's start in the joined audio is clamped to it.
    assert joined.word(1.8, 2.5, " c", 0.7) == Word(10.0, 10.5, " c", 0.7)


def test_temperature_fallback_rule():
    settings = TranscriptionSettings()
    result = functools.partial(SimpleNamespace, compression_ratio=1.5, avg_logprob=-0.3, no_speech_prob=0.1)
    assert not transcription._needs_fallback(result(), settings)
    assert transcription._needs_fallback(result(compression_ratio=3.0), settings)  # repetition loop
    assert transcription._needs_fallback(result(avg_logprob=-1.5), settings)  # improbable
    silence = result(avg_logprob=-1.5, no_speech_prob=0.9)
    assert not transcription._needs_fallback(silence, settings) and transcription._is_silence(silence, settings)


def test_one_party_channels_decode_each_window_once_and_never_drop_it_as_silence(monkeypatch):
    """faster-whisper seeks back to the last word's end after a window's decode and decodes the
    rest again (the padding, which comes back as "Thank you."). On one party's channel of a
    stereo call the second decode is never run, and no window is dropped as silence (its
    speech regions say it is speech); mono keeps both."""
    decodes, thresholds = [], []

    class FakeModel:
        def transcribe(self, audio, **options):
            thresholds.append(options["no_speech_threshold"])

            def segments():
                decodes.append("window")
                yield SimpleNamespace(seek=0, words=[SimpleNamespace(start=0.5, end=0.9, word=" Hello", probability=0.9)])
                decodes.append("tail")
                yield SimpleNamespace(seek=150, words=[SimpleNamespace(start=2.6, end=2.9, word=" Thank", probability=0.5)])

            return segments(), None

    monkeypatch.setattr(transcription, "_faster_whisper_model", lambda *args: FakeModel())
    monkeypatch.setattr(transcription, "local_model_path", lambda *args, **kwargs: Path("tiny.en"))
    samples, speech = np.zeros(3 * SR, np.float32), Timeline([Segment(0.5, 2.5)])
    mono = transcription.transcribe(samples, SR, speech, TranscriptionSettings())
    assert [w.text for w in mono] == [" Hello", " Thank"] and decodes == ["window", "tail"]
    decodes.clear()
    once = transcription.transcribe(samples, SR, speech, TranscriptionSettings(), one_party=True)
    assert [w.text for w in once] == [" Hello"] and decodes == ["window"]
    assert thresholds == [0.6, None]
    # openai-whisper's own rule, without a threshold: nothing is silence.
    quiet = SimpleNamespace(compression_ratio=1.0, avg_logprob=-1.5, no_speech_prob=0.99)
    assert not transcription._is_silence(quiet, dataclasses.replace(TranscriptionSettings(), no_speech_threshold=None))
