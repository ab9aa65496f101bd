"""The batch with the real analyze_call on Ray: a generated call commits, bad inputs quarantine."""

from __future__ import annotations

from stack_helpers import DAY, curated_snapshot, read_curated_parquet

from pipeline.jobs.batch import discover_pending, run_batch
from pipeline.storage import object_store
from pipeline.storage.curated import CuratedStore


def test_batch_with_real_analysis(settings, ray_local, tmp_path):
    """The real analyze_call on Ray: a generated two-speaker call commits, bad inputs quarantine."""
    from pipeline.devtools.synth.bad_inputs import write_bad_inputs
    from pipeline.devtools.synth.calls import generate_call

    s3 = settings.s3
    client = object_store.s3_client(s3)
    call = generate_call(tmp_path / "raw", "synth-e2e", seed=3, n_speakers=2, truth_dir=tmp_path / "truth")
    for path in [call.audio_path, call.metadata_path, *write_bad_inputs(tmp_path / "bad").values()]:
        object_store.upload_file(client, path, s3.raw_bucket, f"{s3.raw_prefix}{DAY}/{path.name}")

    report = run_batch(settings)

    assert report.ok == ["synth-e2e"] and report.failed == {}
    assert set(report.quarantined) == {"empty", "truncated", "not_media", "silent"}
    assert all(reason and "internal error" not in reason for reason in report.quarantined.values())
    [manifest] = [m for _, m in CuratedStore(settings).manifests() if m.status == "ok"]
    expected = {"calls", "speaker_turns", "utterances", "speaker_affect", "qa_flags", "stage_metrics"}
    assert expected <= set(manifest.table_keys)
    assert manifest.sha256 and manifest.stage_seconds["transcription"] > 0
    affect = read_curated_parquet(settings, manifest.table_keys["speaker_affect"]).read()
    assert affect.num_rows == manifest.tables["speaker_affect"] > 0
    assert set(affect.column("role").to_pylist()) == {"customer"}  # nothing is inferred about the agent
    assert all(-1.0 <= v <= 1.0 for v in affect.column("valence").to_pylist() if v is not None)

    before = curated_snapshot(settings)
    assert discover_pending(settings) == []
    assert run_batch(settings).ok == [] and curated_snapshot(settings) == before
