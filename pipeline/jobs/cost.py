"""`callaffect cost`: what one minute of call audio costs to analyse and keep, per profile.

    cost per call-minute = compute + storage + requests
    compute  = (vCPU-s per audio minute x CPU price per vCPU-s + GPU-s per audio minute x GPU price
                per s) / utilisation
    vCPU-s   = 60 x sum over CPU stages of real-time factor x ray.num_cpus_per_call
    GPU-s    = 60 x sum over GPU stages of real-time factor (one GPU per GPU instance)
    storage  = (derived bytes per minute x derived months + raw bytes per minute x raw months)
               x S3 price per GB-month (months from the retention limits)
    requests = (PUTs per call x PUT price + GETs per call x GET price) / mean call minutes

Stage real-time factors come from the marts (`fct_stage_metrics` seconds over `dim_calls` audio:
measured in production), else from a `bench/bench_analyze.py` JSON, else from the figures this
module carries (measured by that bench on the project's 2-core machine). The GPU profile replaces
speech activity, diarization and transcription with GPU backends and adds the heavy clip model;
no GPU has been lent to this project, so those figures are assumed from published benchmarks.
Every figure carries its provenance, `measured` or `assumed`, and its source.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.settings import Settings

MEASURED, ASSUMED = "measured", "assumed"

# bench/bench_analyze.py --calls 3 (3 generated calls, 207 s of audio), 2026-12-05, 2-core machine
# shared with other jobs: stage seconds per audio second, models warm.
EMBEDDED_CPU_SOURCE = "bench/bench_analyze.py --calls 3, 2026-12-05, 2-core machine (207 s of audio)"
EMBEDDED_CPU_RTF = {
    "decode": 0.00046, "speech_activity": 0.00531, "diarization": 0.00576, "transcription": 0.08325,
    "attribution": 0.00003, "redaction": 0.00003, "conversation": 0.00001, "voice_features": 0.02545,
    "voice_affect": 0.00009, "review_snippets": 0.00135,
}
# bench/bench_vision.py --minutes 60 (README "Quality and speed"): the face branch on CPU.
VISION_CPU_RTF = 0.038
VISION_CPU_SOURCE = "bench/bench_vision.py --minutes 60, 2026-11-22 (README 'Quality and speed')"
# Stages a GPU node takes over in the GPU profile (pyannote for both audio stages, Whisper on GPU).
GPU_REPLACES = ("speech_activity", "diarization", "transcription")
# A call's requests to S3 in pipeline/jobs/batch.py: raw HEAD, sidecar HEAD + GET, media GET,
# lease GET-on-conflict/none, manifest check (GETs); lease PUT + DELETE-free (PUTs).
BATCH_GETS_PER_CALL = 5
BATCH_PUTS_PER_CALL = 1
# Each nightly marts build reads every committed call's Parquet (footer + data: about 2 GETs a file).
GETS_PER_FILE_PER_BUILD = 2
DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    provenance: str  # "measured" or "assumed"
    source: str


@dataclass(frozen=True)
class Stage:
    stage: str
    resource: str  # "cpu" or "gpu"
    rtf: float  # resource-seconds per second of audio
    provenance: str
    source: str


@dataclass
class Profile:
    name: str
    stages: list[Stage]
    figures: list[Figure] = field(default_factory=list)  # the derived lines, each with its inputs' provenance

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)


@dataclass
class CostReport:
    inputs: list[Figure]
    profiles: list[Profile]
    comparisons: list[Figure]

    def to_dict(self) -> dict:
        return asdict(self)


# --- stage figures -----------------------------------------------------------------------------


def stages_from_bench(path: str | os.PathLike) -> list[Stage]:
    """Per-stage real-time factors of a bench/bench_analyze.py JSON ("total" over its calls)."""
    data = json.loads(Path(path).read_text())
    source = f"{path} (bench_analyze, {data['total']['audio_s']} s of audio)"
    return [Stage(name, "cpu", float(v["rtf"]), MEASURED, source) for name, v in data["total"]["stages"].items()]


def stages_from_marts(path: str | os.PathLike) -> tuple[list[Stage], float | None]:
    """Per stage: seconds over audio seconds of every loaded call (a stage that ran on some calls,
    such as the face branch, is weighted by how many); its resource from the device it ran on.
    Also the mean call length in minutes."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        audio_s, calls = con.execute("select coalesce(sum(duration_s), 0), count(*) from dim_calls").fetchone()
        if not audio_s:
            raise ValueError(f"{path}: no loaded call with a duration in dim_calls")
        rows = con.execute(
            "select stage, sum(seconds), bool_or(coalesce(device, '') like 'cuda%') from fct_stage_metrics"
            " where call_id in (select call_id from dim_calls) group by stage order by stage").fetchall()
    source = f"{path}: fct_stage_metrics over dim_calls ({calls} calls, {audio_s / 60:.1f} min)"
    stages = [Stage(stage, "gpu" if gpu else "cpu", float(seconds) / float(audio_s), MEASURED, source)
              for stage, seconds, gpu in rows]
    return stages, float(audio_s) / 60 / calls


def embedded_cpu_stages(settings: Settings) -> list[Stage]:
    stages = [Stage(name, "cpu", rtf, MEASURED, EMBEDDED_CPU_SOURCE) for name, rtf in EMBEDDED_CPU_RTF.items()]
    return stages + vision_stages(settings)


def vision_stages(settings: Settings) -> list[Stage]:
    share = settings.cost.video_call_share
    if not share:
        return []
    return [Stage("face_branch (video share)", "cpu", VISION_CPU_RTF * share, ASSUMED,
                  f"{VISION_CPU_SOURCE} x cost.video_call_share {share} (assumed)")]


def gpu_stages(cpu_stages: list[Stage], settings: Settings) -> list[Stage]:
    """The GPU profile: the CPU stages but those a GPU node takes over, plus the heavy clips."""
    cost = settings.cost
    kept = [s for s in cpu_stages if s.stage not in GPU_REPLACES]
    gpu = [
        Stage("speech_activity+diarization (pyannote)", "gpu", cost.gpu_diarization_rtf, ASSUMED,
              "cost.gpu_diarization_rtf: pyannote/speaker-diarization-3.1 README, RTF 2.5 % on one V100; not measured here"),
        Stage("transcription (Whisper large-v2)", "gpu", cost.gpu_transcription_rtf, ASSUMED,
              "cost.gpu_transcription_rtf: faster-whisper README, large-v2 fp16 beam 5, 13 min in 54 s on an RTX 3070 Ti;"
              " not measured here"),
    ]
    if cost.video_call_share:
        clips_per_audio_s = cost.video_call_share / settings.vision.clip_every_s  # at most one clip per clip_every_s
        gpu.append(Stage("face_expression_clips (MAE-DFER)", "gpu", clips_per_audio_s / cost.gpu_clips_per_s, ASSUMED,
                         f"one clip per vision.clip_every_s ({settings.vision.clip_every_s} s) of video x share"
                         f" {cost.video_call_share} / cost.gpu_clips_per_s {cost.gpu_clips_per_s:g}"))
    return kept + gpu


# --- what is stored --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredData:
    bytes_per_call_minute: float
    objects_per_call: float
    mean_call_minutes: float
    source: str


def measure_curated(settings: Settings, root: str) -> StoredData:
    """Bytes and objects of the calls' derived data under a curated root (s3:// or a directory),
    over the audio minutes of the calls committed ok there."""
    from pipeline.storage import object_store
    from pipeline.storage.curated import CuratedStore

    store = CuratedStore(settings, root)
    manifests = [m for _, m in store.manifests()]
    minutes = sum((m.duration_s or 0.0) for m in manifests if m.status == "ok") / 60
    if not minutes:
        raise ValueError(f"{root}: no call committed ok with a duration")
    if store.is_s3:
        bucket, prefix = object_store.parse_s3_uri(store.root)
        sizes = [(o.key, o.size) for o in object_store.list_objects(object_store.s3_client(settings.s3), bucket, prefix)]
    else:
        base = Path(store.root)
        sizes = [(str(p.relative_to(base)), p.stat().st_size) for p in base.rglob("*") if p.is_file()]
    per_call = [(k, n) for k, n in sizes if "/call_id=" in k]  # tables, snippets, manifests; not _ops/_reviews
    calls = len(manifests)
    return StoredData(sum(n for _, n in per_call) / minutes, len(per_call) / calls, minutes / calls,
                      f"{root}: {len(per_call)} objects of {calls} calls, {minutes:.1f} min")


# --- the arithmetic ---------------------------------------------------------------------------------


def _worst(*provenances: str) -> str:
    return ASSUMED if ASSUMED in provenances else MEASURED


def price_inputs(settings: Settings, utilisation: float | None = None) -> list[Figure]:
    c = settings.cost
    src = c.price_source
    return [
        Figure("utilisation", utilisation if utilisation is not None else c.utilisation, "share", ASSUMED,
               "--utilisation" if utilisation is not None else "cost.utilisation (assumed: nodes start, queues drain)"),
        Figure("cpu_instance_usd_per_hour", c.cpu_instance_usd_per_hour, "USD/h", ASSUMED, f"{c.cpu_instance}: {src}"),
        Figure("cpu_instance_vcpus", c.cpu_instance_vcpus, "vCPU", ASSUMED, f"{c.cpu_instance}: {src}"),
        Figure("gpu_instance_usd_per_hour", c.gpu_instance_usd_per_hour, "USD/h", ASSUMED, f"{c.gpu_instance}: {src}"),
        Figure("s3_usd_per_gb_month", c.s3_usd_per_gb_month, "USD/GB-month", ASSUMED, f"S3 Standard: {src}"),
        Figure("s3_put_usd_per_1000", c.s3_put_usd_per_1000, "USD", ASSUMED, f"S3 PUT/LIST: {src}"),
        Figure("s3_get_usd_per_1000", c.s3_get_usd_per_1000, "USD", ASSUMED, f"S3 GET: {src}"),
        Figure("vcpus_per_call", settings.ray.num_cpus_per_call, "vCPU", ASSUMED,
               "ray.num_cpus_per_call (a call task's reservation)"),
    ]


def storage_inputs(settings: Settings, stored: StoredData | None, mean_call_minutes: Figure | None) -> list[Figure]:
    c, r = settings.cost, settings.retention
    figures = [
        Figure("derived_months", r.aggregate_max_age_days / DAYS_PER_MONTH, "months", ASSUMED,
               "retention.aggregate_max_age_days (upper bound: text, snippets and windows go earlier)"),
        Figure("raw_months", r.raw_max_age_days / DAYS_PER_MONTH, "months", ASSUMED, "retention.raw_max_age_days"),
        Figure("raw_bytes_per_call_minute", c.raw_bytes_per_call_minute, "B", ASSUMED,
               "cost.raw_bytes_per_call_minute (8 kHz 16-bit mono WAV)"),
        Figure("marts_builds_per_call", float(r.aggregate_max_age_days), "builds", ASSUMED,
               "one nightly marts build per day a call is kept (each reads its Parquet again)"),
        Figure("batch_gets_per_call", BATCH_GETS_PER_CALL, "requests", ASSUMED, "pipeline/jobs/batch.py request pattern"),
        Figure("batch_puts_per_call", BATCH_PUTS_PER_CALL, "requests", ASSUMED, "pipeline/jobs/batch.py: the lease"),
    ]
    if stored is not None:
        figures += [Figure("derived_bytes_per_call_minute", stored.bytes_per_call_minute, "B", MEASURED, stored.source),
                    Figure("objects_per_call", stored.objects_per_call, "objects", MEASURED, stored.source)]
    else:
        from pipeline.schemas import TABLES

        figures += [Figure("derived_bytes_per_call_minute", c.derived_bytes_per_call_minute, "B", ASSUMED,
                           "cost.derived_bytes_per_call_minute (default: bench/bench_cluster.py, 8 generated calls, 2026-12-05)"),
                    Figure("objects_per_call", len(TABLES) + 1, "objects", ASSUMED,
                           "one Parquet file per table (pipeline.schemas.TABLES) + the manifest")]
    if mean_call_minutes is None:
        mean_call_minutes = (Figure("mean_call_minutes", stored.mean_call_minutes, "min", MEASURED, stored.source)
                             if stored is not None else
                             Figure("mean_call_minutes", c.mean_call_minutes, "min", ASSUMED, "cost.mean_call_minutes"))
    return figures + [mean_call_minutes]


def price_profile(profile: Profile, inputs: list[Figure]) -> Profile:
    """Fill the profile's derived figures from its stages and the inputs (by name)."""
    f = {x.name: x for x in inputs}
    cpu = [s for s in profile.stages if s.resource == "cpu"]
    gpu = [s for s in profile.stages if s.resource == "gpu"]
    util = f["utilisation"].value
    vcpu_s = 60 * sum(s.rtf for s in cpu) * f["vcpus_per_call"].value
    gpu_s = 60 * sum(s.rtf for s in gpu)
    cpu_usd = vcpu_s * f["cpu_instance_usd_per_hour"].value / 3600 / f["cpu_instance_vcpus"].value / util
    gpu_usd = gpu_s * f["gpu_instance_usd_per_hour"].value / 3600 / util
    gb = 1e9
    storage_usd = (f["derived_bytes_per_call_minute"].value * f["derived_months"].value
                   + f["raw_bytes_per_call_minute"].value * f["raw_months"].value) / gb * f["s3_usd_per_gb_month"].value
    objects = f["objects_per_call"].value
    puts = objects + f["batch_puts_per_call"].value
    gets = f["batch_gets_per_call"].value + objects * GETS_PER_FILE_PER_BUILD * f["marts_builds_per_call"].value
    requests_usd = (puts * f["s3_put_usd_per_1000"].value + gets * f["s3_get_usd_per_1000"].value) / 1000 \
        / f["mean_call_minutes"].value
    stage_prov = _worst(*(s.provenance for s in profile.stages)) if profile.stages else ASSUMED
    cpu_prov = _worst(*(s.provenance for s in cpu), ASSUMED)  # prices are assumed
    gpu_prov = _worst(*(s.provenance for s in gpu), ASSUMED)
    stor_prov = _worst(f["derived_bytes_per_call_minute"].provenance, ASSUMED)
    req_prov = _worst(f["objects_per_call"].provenance, f["mean_call_minutes"].provenance, ASSUMED)
    total = cpu_usd + gpu_usd + storage_usd + requests_usd
    derived = "computed from figures labelled {}"
    profile.figures = [
        Figure("vcpu_seconds_per_call_minute", vcpu_s, "vCPU-s", _worst(*(s.provenance for s in cpu)) if cpu else ASSUMED,
               "60 x sum of CPU stage RTFs x vcpus_per_call"),
        Figure("gpu_seconds_per_call_minute", gpu_s, "GPU-s", _worst(*(s.provenance for s in gpu)) if gpu else MEASURED,
               "60 x sum of GPU stage RTFs" if gpu else "no GPU stage"),
        Figure("cpu_usd_per_call_minute", cpu_usd, "USD", cpu_prov, "vCPU-s x CPU price per vCPU-s / utilisation"),
        Figure("gpu_usd_per_call_minute", gpu_usd, "USD", gpu_prov, "GPU-s x GPU price per s / utilisation"),
        Figure("storage_usd_per_call_minute", storage_usd, "USD", stor_prov,
               "(derived B x derived months + raw B x raw months) x S3 GB-month price"),
        Figure("requests_usd_per_call_minute", requests_usd, "USD", req_prov,
               "(PUTs x PUT price + GETs incl. marts rebuild reads x GET price) / mean call minutes"),
        Figure("total_usd_per_call_minute", total, "USD", _worst(stage_prov, ASSUMED), derived.format("above")),
    ]
    return profile


def comparisons(settings: Settings, mean_call_minutes: Figure) -> list[Figure]:
    c = settings.cost
    return [
        Figure("custom_build_usd_per_minute", c.custom_build_usd_per_minute, "USD", ASSUMED,
               "published claim of custom speech-analytics builds: under $0.005 per minute (cost.custom_build_usd_per_minute)"),
        Figure("ccai_usd_per_conversation", c.ccai_usd_per_conversation, "USD", ASSUMED,
               "Google CCAI Insights list price per conversation (cost.ccai_usd_per_conversation)"),
        Figure("ccai_usd_per_minute", c.ccai_usd_per_conversation / mean_call_minutes.value, "USD",
               _worst(mean_call_minutes.provenance, ASSUMED),
               f"ccai_usd_per_conversation / mean_call_minutes ({mean_call_minutes.value:.2f}, {mean_call_minutes.provenance})"),
    ]


def cost_report(settings: Settings, *, marts_path: str | os.PathLike | None = None,
                bench_path: str | os.PathLike | None = None, curated_root: str | None = None,
                utilisation: float | None = None) -> CostReport:
    mean_from_marts = None
    if marts_path is not None:
        measured, mean_minutes = stages_from_marts(marts_path)
        cpu_stages = [s for s in measured if s.resource == "cpu"]
        first = Profile("measured (marts)", measured)
        if mean_minutes:
            mean_from_marts = Figure("mean_call_minutes", mean_minutes, "min", MEASURED, f"{marts_path}: dim_calls")
    else:
        cpu_stages = (stages_from_bench(bench_path) + vision_stages(settings)) if bench_path else embedded_cpu_stages(settings)
        first = Profile("embedded CPU", cpu_stages)
    if utilisation is not None and not 0 < utilisation <= 1:
        raise ValueError(f"--utilisation must be in (0, 1], got {utilisation}")
    stored = measure_curated(settings, curated_root) if curated_root else None
    inputs = price_inputs(settings, utilisation) + storage_inputs(settings, stored, mean_from_marts)
    profiles = [price_profile(first, inputs), price_profile(Profile("GPU", gpu_stages(cpu_stages, settings)), inputs)]
    mean = next(x for x in inputs if x.name == "mean_call_minutes")
    return CostReport(inputs, profiles, comparisons(settings, mean))


def _value(x: Figure) -> str:
    if x.unit == "USD":
        return f"${x.value:.6f}"
    return f"{x.value:,.4g} {x.unit}"


def render_text(report: CostReport) -> str:
    lines = ["Cost per call-minute (every figure: measured or assumed, and its source)", "", "Inputs"]
    lines += [f"  {x.name:<32} {_value(x):>18}  {x.provenance:<8}  {x.source}" for x in report.inputs]
    for p in report.profiles:
        lines += ["", f"Profile: {p.name}", "  stages (resource-seconds per audio second)"]
        lines += [f"    {s.stage:<40} {s.resource:<3} {s.rtf:>9.5f}  {s.provenance:<8}  {s.source}" for s in p.stages]
        lines += [f"  {x.name:<32} {_value(x):>18}  {x.provenance:<8}  {x.source}" for x in p.figures]
    lines += ["", "Compared with"]
    lines += [f"  {x.name:<32} {_value(x):>18}  {x.provenance:<8}  {x.source}" for x in report.comparisons]
    ref = {x.name: x.value for x in report.comparisons}
    for p in report.profiles:
        total = p.figure("total_usd_per_call_minute").value
        lines.append(f"  {p.name}: {total / ref['custom_build_usd_per_minute']:.2f}x the custom-build figure,"
                     f" {total / ref['ccai_usd_per_minute']:.2f}x CCAI per minute")
    return "\n".join(lines)
