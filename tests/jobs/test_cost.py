"""`callaffect cost`: the arithmetic on a small synthetic stage table, stage figures read from a
real DuckDB marts file and a bench JSON, bytes measured from a curated root, and the provenance
of every figure."""

from __future__ import annotations

import dataclasses
import json

import duckdb
import pytest
from factories import make_call_tables

from pipeline import cli
from pipeline.jobs import cost
from pipeline.manifest import CallManifest
from pipeline.schemas import SCHEMA_VERSION
from pipeline.settings import CostSettings, RetentionSettings, Settings, load_settings
from pipeline.storage.curated import CuratedStore


def _inputs(**overrides) -> list[cost.Figure]:
    values = {
        "utilisation": 0.5, "cpu_instance_usd_per_hour": 0.36, "cpu_instance_vcpus": 4, "gpu_instance_usd_per_hour": 1.8,
        "s3_usd_per_gb_month": 0.02, "s3_put_usd_per_1000": 0.005, "s3_get_usd_per_1000": 0.0004, "vcpus_per_call": 2.0,
        "derived_months": 12.0, "raw_months": 1.0, "raw_bytes_per_call_minute": 1e6, "marts_builds_per_call": 10.0,
        "batch_gets_per_call": 5, "batch_puts_per_call": 1, "derived_bytes_per_call_minute": 5e4, "objects_per_call": 10,
        "mean_call_minutes": 4.0, **overrides,
    }
    return [cost.Figure(k, v, "u", cost.ASSUMED, "test") for k, v in values.items()]


def _stages(cpu_provenance=cost.MEASURED) -> list[cost.Stage]:
    return [cost.Stage("transcription", "cpu", 0.10, cpu_provenance, "t"), cost.Stage("voice", "cpu", 0.05, cpu_provenance, "t"),
            cost.Stage("clips", "gpu", 0.02, cost.ASSUMED, "t")]


def test_the_arithmetic_on_a_synthetic_stage_table():
    p = cost.price_profile(cost.Profile("synthetic", _stages()), _inputs())
    got = {f.name: f.value for f in p.figures}
    vcpu_s = 60 * (0.10 + 0.05) * 2.0  # 18 vCPU-seconds per audio minute
    gpu_s = 60 * 0.02
    assert got["vcpu_seconds_per_call_minute"] == pytest.approx(vcpu_s)
    assert got["gpu_seconds_per_call_minute"] == pytest.approx(gpu_s)
    assert got["cpu_usd_per_call_minute"] == pytest.approx(vcpu_s * (0.36 / 4 / 3600) / 0.5)
    assert got["gpu_usd_per_call_minute"] == pytest.approx(gpu_s * (1.8 / 3600) / 0.5)
    assert got["storage_usd_per_call_minute"] == pytest.approx((5e4 * 12 + 1e6 * 1) / 1e9 * 0.02)
    puts, gets = 10 + 1, 5 + 10 * cost.GETS_PER_FILE_PER_BUILD * 10
    assert got["requests_usd_per_call_minute"] == pytest.approx((puts * 0.005 + gets * 0.0004) / 1000 / 4.0)
    parts = ("cpu", "gpu", "storage", "requests")
    assert got["total_usd_per_call_minute"] == pytest.approx(sum(got[f"{k}_usd_per_call_minute"] for k in parts))


def test_halving_utilisation_doubles_compute_and_leaves_storage_alone():
    full = {f.name: f.value for f in cost.price_profile(cost.Profile("a", _stages()), _inputs(utilisation=1.0)).figures}
    half = {f.name: f.value for f in cost.price_profile(cost.Profile("b", _stages()), _inputs(utilisation=0.5)).figures}
    assert half["cpu_usd_per_call_minute"] == pytest.approx(2 * full["cpu_usd_per_call_minute"])
    assert half["gpu_usd_per_call_minute"] == pytest.approx(2 * full["gpu_usd_per_call_minute"])
    assert half["storage_usd_per_call_minute"] == full["storage_usd_per_call_minute"]


def test_an_assumed_input_makes_what_is_computed_from_it_assumed():
    p = cost.price_profile(cost.Profile("m", _stages()), _inputs())
    prov = {f.name: f.provenance for f in p.figures}
    assert prov["vcpu_seconds_per_call_minute"] == cost.MEASURED  # measured CPU stages only
    assert prov["gpu_seconds_per_call_minute"] == cost.ASSUMED  # an assumed GPU stage
    assert prov["cpu_usd_per_call_minute"] == cost.ASSUMED  # the price is assumed
    p = cost.price_profile(cost.Profile("a", _stages(cost.ASSUMED)), _inputs())
    assert p.figure("vcpu_seconds_per_call_minute").provenance == cost.ASSUMED


def _every_figure(report: cost.CostReport):
    yield from report.inputs
    yield from report.comparisons
    for p in report.profiles:
        yield from p.figures
        yield from p.stages


def test_every_figure_of_the_default_report_carries_its_provenance_and_source():
    settings = dataclasses.replace(Settings(), cost=CostSettings(video_call_share=0.2))
    report = cost.cost_report(settings)
    figures = list(_every_figure(report))
    assert len(figures) > 30
    assert all(f.provenance in (cost.MEASURED, cost.ASSUMED) and f.source.strip() for f in figures)
    cpu, gpu = report.profiles
    assert (cpu.name, gpu.name) == ("embedded CPU", "GPU")
    # No GPU was measured: every GPU stage says assumed, and so does what is computed from them.
    assert [s.resource for s in gpu.stages if s.provenance == cost.ASSUMED and s.resource == "gpu"]
    assert all(s.provenance == cost.ASSUMED for s in gpu.stages if s.resource == "gpu")
    assert gpu.figure("gpu_seconds_per_call_minute").provenance == cost.ASSUMED
    assert {s.stage for s in cpu.stages} & set(cost.GPU_REPLACES) == set(cost.GPU_REPLACES)
    assert not {s.stage for s in gpu.stages} & set(cost.GPU_REPLACES)
    # The video share adds the face branch on CPU and the heavy clips on the GPU.
    clips = next(s for s in gpu.stages if s.stage.startswith("face_expression_clips"))
    assert clips.rtf == pytest.approx(0.2 / settings.vision.clip_every_s / settings.cost.gpu_clips_per_s)
    mean = next(f for f in report.inputs if f.name == "mean_call_minutes")
    ccai = next(f for f in report.comparisons if f.name == "ccai_usd_per_minute")
    assert (mean.provenance, ccai.provenance) == (cost.ASSUMED, cost.ASSUMED)
    assert ccai.value == pytest.approx(settings.cost.ccai_usd_per_conversation / settings.cost.mean_call_minutes)
    text = cost.render_text(report)
    assert all(f.name in text for f in report.inputs) and "x CCAI per minute" in text


def test_stage_figures_from_a_bench_json_are_measured_and_name_the_file(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"total": {"audio_s": 100.0, "stages": {
        "transcription": {"seconds": 8.0, "rtf": 0.08}, "diarization": {"seconds": 1.0, "rtf": 0.01},
        "voice_features": {"seconds": 2.0, "rtf": 0.02}}}}))
    report = cost.cost_report(Settings(), bench_path=bench)
    cpu, gpu = report.profiles
    assert {s.stage: s.rtf for s in cpu.stages} == {"transcription": 0.08, "diarization": 0.01, "voice_features": 0.02}
    assert all(s.provenance == cost.MEASURED and str(bench) in s.source for s in cpu.stages)
    assert cpu.figure("vcpu_seconds_per_call_minute").value == pytest.approx(60 * 0.11)
    assert [s.stage for s in gpu.stages if s.resource == "cpu"] == ["voice_features"]


def _synthetic_marts(path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create table dim_calls (call_id varchar, call_date date, duration_s double)")
        con.execute("insert into dim_calls values ('a', '2024-05-02', 60), ('b', '2024-05-02', 120)")
        con.execute("create table fct_stage_metrics (call_id varchar, call_date date, stage varchar, seconds double,"
                    " real_time_factor double, device varchar, backend varchar, model_version varchar)")
        con.execute("insert into fct_stage_metrics values"
                    " ('a', '2024-05-02', 'transcription', 6, 0.1, 'cpu', 'x', 'v'),"
                    " ('b', '2024-05-02', 'transcription', 12, 0.1, 'cpu', 'x', 'v'),"
                    " ('b', '2024-05-02', 'face_expression_clips', 3.6, 0.03, 'cuda:0', 'x', 'v'),"
                    " ('gone', '2024-05-02', 'transcription', 99, 1, 'cpu', 'x', 'v')")  # not a loaded call


def test_marts_give_measured_stage_rtfs_over_all_loaded_audio_and_the_device_decides_the_resource(tmp_path):
    marts = tmp_path / "marts.duckdb"
    _synthetic_marts(marts)
    stages, mean_minutes = cost.stages_from_marts(marts)
    assert {s.stage: (s.resource, s.rtf) for s in stages} == {
        "transcription": ("cpu", pytest.approx((6 + 12) / 180)),
        "face_expression_clips": ("gpu", pytest.approx(3.6 / 180)),  # weighted by the calls it ran on
    }
    assert mean_minutes == pytest.approx(1.5)
    report = cost.cost_report(Settings(), marts_path=marts)
    measured = report.profiles[0]
    assert measured.name == "measured (marts)" and all(s.provenance == cost.MEASURED for s in measured.stages)
    mean = next(f for f in report.inputs if f.name == "mean_call_minutes")
    assert (mean.value, mean.provenance) == (pytest.approx(1.5), cost.MEASURED)
    assert measured.figure("gpu_seconds_per_call_minute").value == pytest.approx(60 * 3.6 / 180)


def test_bytes_and_objects_per_call_minute_are_measured_from_a_curated_root(tmp_path):
    root = tmp_path / "curated"
    settings = Settings()
    store = CuratedStore(settings, root)
    for call_id, seconds in (("c-1", 60.0), ("c-2", 180.0)):
        manifest = CallManifest(call_id, status="ok", sha256="e" * 64, duration_s=seconds, schema_version=SCHEMA_VERSION)
        manifest.call_date = "2024-05-02"
        store.commit(manifest, make_call_tables(call_id, "2024-05-02", duration_s=seconds, seed=1))
    (root / "_ops").mkdir()
    (root / "_ops" / "noise.json").write_bytes(b"x" * 10_000)  # not a call's data
    files = [p for p in root.rglob("*") if p.is_file() and "call_id=" in str(p)]
    stored = cost.measure_curated(settings, str(root))
    assert stored.bytes_per_call_minute == pytest.approx(sum(p.stat().st_size for p in files) / 4.0)
    assert stored.objects_per_call == len(files) / 2 and stored.mean_call_minutes == pytest.approx(2.0)
    report = cost.cost_report(settings, curated_root=str(root))
    derived = next(f for f in report.inputs if f.name == "derived_bytes_per_call_minute")
    assert derived.provenance == cost.MEASURED and str(root) in derived.source


def test_cli_prints_json_and_refuses_a_utilisation_out_of_range(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CALLAFFECT_COST__UTILISATION", "0.35")
    assert cli.main(["cost", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert next(f for f in data["inputs"] if f["name"] == "utilisation")["value"] == 0.35
    assert [p["name"] for p in data["profiles"]] == ["embedded CPU", "GPU"]
    assert cli.main(["cost", "--utilisation", "1.5"]) == cli.EXIT_ERROR
    assert "utilisation" in capsys.readouterr().err


def test_cost_settings_load_from_the_environment_fail_loudly_and_leave_the_fingerprint_alone():
    loaded = load_settings(env={"CALLAFFECT_COST__CPU_INSTANCE_USD_PER_HOUR": "1.25"})
    assert loaded.cost.cpu_instance_usd_per_hour == 1.25
    assert loaded.fingerprint() == Settings().fingerprint()
    with pytest.raises(ValueError, match="cost.utilisation"):
        load_settings(env={"CALLAFFECT_COST__UTILISATION": "0"})
    with pytest.raises(ValueError, match="cost"):
        load_settings(env={"CALLAFFECT_COST__NOPE": "1"})
    assert Settings(retention=RetentionSettings()).cost == CostSettings()
