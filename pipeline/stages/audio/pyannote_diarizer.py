"""Diarization with a saved pyannote.audio (4.x) pipeline: audio -> pyannote.core.Annotation.

The pipeline is a directory (``config.yaml`` + checkpoints, e.g. a copy of
pyannote/speaker-diarization-community-1) given locally or as an s3:// prefix in the model store.
Nothing is fetched from a model hub: every model the config names is resolved to a local file
here, *before* pyannote sees the config, and a name that is not local fails with a clear error.
pyannote would otherwise take any non-local string (or a missing ``segmentation``/``embedding``/
``plda`` entry, whose defaults are community-1 on the hub) as a hub id and try to download it;
``HF_HUB_OFFLINE`` alone cannot stop that once huggingface_hub has been imported, because it reads
the variable at import. Sites that do reach the hub set ``diarization.pyannote_token_path``: then
hub ids in the config are left for pyannote to fetch with that token.

The output keeps overlapped speech (pyannote's ``speaker_diarization``, not the ``exclusive``
variant) and is clipped to the recording: pyannote's last frames can run past the end.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment

from pipeline.storage.model_store import resolve_model_path
from pipeline.settings import Settings
from pipeline.stages.audio.embedded_diarizer import rename_by_first_appearance
from pipeline.records import SpeakerHints

_CONFIG = "config.yaml"
_MODEL_FILE = "pytorch_model.bin"  # what Model.from_pretrained looks for in a directory
_PLDA_FILES = ("xvec_transform.npz", "plda.npz")  # what PLDA.from_pretrained looks for
_REFERENCES = ("segmentation", "embedding", "plda")


class PyannotePipelineError(RuntimeError):
    """The configured pyannote pipeline cannot be used (missing, invalid, or not local)."""


@dataclass(frozen=True)
class _Resolved:
    config: dict  # pipeline config with every model reference an absolute local path
    version: str


_lock = threading.Lock()
_resolved: dict[tuple[str, str | None], _Resolved] = {}
_pipelines: dict[tuple[str, str], object] = {}


def _no_network_env(offline: bool) -> None:
    # pyannote.audio 4.x sends usage telemetry to otel.pyannote.ai unless this is false; it
    # reads the variable at each call.
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"


def _read_token(settings: Settings) -> str | None:
    path = settings.diarization.pyannote_token_path
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise PyannotePipelineError(f"diarization.pyannote_token_path: cannot read {path}: {exc}") from None


def _local_reference(key: str, value: object, directory: Path, allow_hub: bool) -> object:
    """Absolute local form of one model reference in the config (or the hub id, if allowed)."""
    where = f"{directory / _CONFIG}: pipeline.params.{key}"
    subfolder = None
    if isinstance(value, dict):
        subfolder, value = value.get("subfolder"), value.get("checkpoint")
    if value is None:
        if allow_hub:
            return None  # pyannote's default (community-1 on the hub) is fetched with the token
        raise PyannotePipelineError(
            f"{where} is missing: pyannote.audio would fetch pyannote/speaker-diarization-community-1's "
            f"{key} from the hub. Name a local {key} in the config (e.g. $model/{key})."
        )
    if not isinstance(value, str):
        raise PyannotePipelineError(f"{where}: expected a path, got {value!r}")
    in_pipeline_dir = value.startswith("$model/")
    if in_pipeline_dir:
        relative, _, revision = value[len("$model/"):].partition("@")
        if revision:
            raise PyannotePipelineError(f"{where}: a local pipeline has no revisions ({value!r})")
        path = directory / relative
    else:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else directory / path
    if subfolder:
        path = path / subfolder
    if not path.exists():
        if allow_hub and not in_pipeline_dir:
            return value if subfolder is None else {"checkpoint": value, "subfolder": subfolder}
        raise PyannotePipelineError(
            f"{where}: {value!r} is not a local file or directory ({path} does not exist); "
            "models are never downloaded (no diarization.pyannote_token_path)"
        )
    if key == "plda":
        missing = [name for name in _PLDA_FILES if not (path / name).is_file()]
        if missing:
            raise PyannotePipelineError(f"{where}: {path} lacks {', '.join(missing)}")
        return str(path)
    if path.is_dir():
        path = path / _MODEL_FILE
        if not path.is_file():
            raise PyannotePipelineError(f"{where}: {path.parent} has no {_MODEL_FILE}")
    # A mapping, not a string: pyannote picks the embedding loader from words in a string
    # ("wespeaker", "speechbrain", "nvidia"), so a local path containing one would be misread.
    return {"checkpoint": str(path)}


def _load_config(directory: Path, allow_hub: bool) -> dict:
    import yaml
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.core.utils.helper import get_class_by_name

    config_path = directory / _CONFIG
    if not config_path.is_file():
        raise PyannotePipelineError(f"not a pyannote pipeline directory: {config_path} does not exist")
    try:
        config = yaml.safe_load(config_path.read_text())
        name = config["pipeline"]["name"]
        klass = get_class_by_name(name, default_module_name="pyannote.pipeline.blocks")
    except (yaml.YAMLError, TypeError, KeyError, AttributeError, ImportError, ValueError) as exc:
        raise PyannotePipelineError(f"{config_path}: not a valid pyannote pipeline config ({exc!r})") from None
    if not (isinstance(klass, type) and issubclass(klass, SpeakerDiarization)):
        raise PyannotePipelineError(f"{config_path}: pipeline {name} is not a speaker diarization pipeline")
    params = config["pipeline"]["params"] = config["pipeline"].get("params") or {}
    for key in _REFERENCES:
        reference = _local_reference(key, params.get(key), directory, allow_hub)
        if reference is None:
            params.pop(key, None)
        else:
            params[key] = reference
    return config


def _fingerprint(config_path: Path, config: dict) -> str:
    """Hash of the config file and every local file it loads: names the exact weights."""
    digest = hashlib.sha256(config_path.read_bytes())
    files: list[Path] = []
    for key in _REFERENCES:
        reference = config["pipeline"]["params"].get(key)
        if isinstance(reference, dict) and Path(reference["checkpoint"]).is_file():
            files.append(Path(reference["checkpoint"]))
        elif key == "plda" and isinstance(reference, str) and Path(reference).is_dir():
            files.extend(Path(reference) / name for name in _PLDA_FILES)
        elif reference is not None:
            digest.update(repr(reference).encode())  # a hub reference (token sites only)
    for path in files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def _resolve(settings: Settings) -> _Resolved:
    source = settings.diarization.pyannote_pipeline
    if not source:
        raise PyannotePipelineError("diarization.backend is 'pyannote' but diarization.pyannote_pipeline is not set")
    key = (source, settings.diarization.pyannote_token_path)  # the token decides what may be fetched
    with _lock:
        if key in _resolved:
            return _resolved[key]
        allow_hub = _read_token(settings) is not None
        _no_network_env(offline=not allow_hub)
        try:
            directory = resolve_model_path(source, settings)
        except FileNotFoundError as exc:
            raise PyannotePipelineError(f"diarization.pyannote_pipeline: {exc}") from None
        config = _load_config(directory, allow_hub)
        from pyannote.audio import __version__

        name = source.rstrip("/").rsplit("/", 1)[-1]
        version = f"pyannote.audio=={__version__} pipeline={name}@{_fingerprint(directory / _CONFIG, config)}"
        _resolved[key] = _Resolved(config, version)
        return _resolved[key]


def resolve_device(name: str):
    """torch.device for a ``diarization.device`` setting: "auto" is the GPU when there is one."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PyannotePipelineError(f"diarization.device is {name!r} but no CUDA device is available")
    return device


def load_pipeline(settings: Settings):
    """The pyannote pipeline for these settings, loaded once per process (per source and device)."""
    device = resolve_device(settings.diarization.device)
    resolved = _resolve(settings)
    key = (settings.diarization.pyannote_pipeline, str(device))
    with _lock:
        if key not in _pipelines:
            from pyannote.audio import Pipeline

            # A copy: from_pretrained adds keys to the config it is given.
            pipeline = Pipeline.from_pretrained(copy.deepcopy(resolved.config), token=_read_token(settings))
            _pipelines[key] = pipeline.to(device)
        return _pipelines[key]


def model_version(settings: Settings) -> str:
    """pyannote.audio version, pipeline name and a hash of its config and weights."""
    return _resolve(settings).version


def diarize_pyannote(
    samples: np.ndarray, sample_rate: int, settings: Settings, hints: SpeakerHints = SpeakerHints()
) -> Annotation:
    """Speaker turns (overlaps kept) labelled SPEAKER_00, SPEAKER_01, ... in order of first appearance."""
    import torch

    if samples.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {samples.shape}")
    pipeline = load_pipeline(settings)
    cap = settings.diarization.max_speakers
    max_speakers = min(hints.max_speakers or cap, cap)
    bounds = {"max_speakers": max_speakers}
    if hints.min_speakers > 1:
        bounds["min_speakers"] = min(hints.min_speakers, max_speakers)
    # A preloaded waveform, (channel, time): pyannote then skips decoding the file itself.
    waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
    output = pipeline({"waveform": waveform, "sample_rate": sample_rate}, **bounds)
    # 4.x returns DiarizeOutput; a config with ``legacy: true`` returns the Annotation itself.
    annotation = output if isinstance(output, Annotation) else output.speaker_diarization
    duration = len(samples) / sample_rate
    return rename_by_first_appearance(annotation.crop(Segment(0.0, duration), mode="intersection"))
