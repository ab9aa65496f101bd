"""The batch on a multi-node Ray cluster on one machine (ray.cluster_utils.Cluster): a head with
no CPUs, two 1-CPU worker nodes and a node that declares a GPU (Ray resources are logical, so
`num_gpus=1` needs no GPU). The real pipeline.jobs.batch.run_batch runs against moto's S3 with a
stand-in analysis that records the node it ran on, and the batch's shared clip-model actor holds
a tiny MAE-DFER export. One worker node is removed while its call runs.

Ray is initialised once per process and the session's `ray_local` fixture owns this one, so the
cluster and its driver live in a subprocess: this file run as a script (see `_drive`), which
prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:  # run as a script: stack_helpers, factories, model_scripts
    sys.path.insert(0, str(TESTS_DIR))

DAY = "2024-05-02"
ANALYZE_S = 4.0  # long enough for the victim node to die while its call runs


# --- the driver (a subprocess) -----------------------------------------------------------------


def _log_path(run_dir: str) -> Path:
    return Path(run_dir) / "analyses.log"


def _node_standin(run_dir: str):
    """A stand-in analysis that logs start and end with its node id and asks the shared clip
    actor for one clip, then returns stack_helpers' valid tables."""

    def analyze(media_path, call_id, *, settings, clip=None, **kwargs):
        import ray

        from stack_helpers import tables_analyze

        node = ray.get_runtime_context().get_node_id()
        with open(_log_path(run_dir), "a") as log:
            log.write(json.dumps({"event": "start", "call_id": call_id, "node": node, "pid": os.getpid()}) + "\n")
        time.sleep(ANALYZE_S)
        import numpy as np

        probs = clip.classify(np.zeros((1, 16, 160, 160, 3), np.uint8)) if clip is not None else None
        with open(_log_path(run_dir), "a") as log:
            log.write(json.dumps({"event": "end", "call_id": call_id, "node": node,
                                  "clip_probs": None if probs is None else len(probs[0])}) + "\n")
        return tables_analyze(media_path, call_id, settings=settings, **kwargs)

    return analyze


def _log_events(run_dir: str) -> list[dict]:
    path = _log_path(run_dir)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _drive(args: dict) -> dict:
    """Build the cluster, run the batch (removing one worker node once a call runs on it), and
    say where everything ran."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    from pipeline.jobs.batch import run_batch
    from pipeline.settings import Settings

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(args["cpu_workers"])]
    # A GPU node has CPUs too; its one CPU goes to the clip actor (num_cpus=1, num_gpus=1).
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    settings = Settings.from_dict(args["settings"])
    settings = dataclasses.replace(settings, ray=dataclasses.replace(settings.ray, address=cluster.address))
    ray.init(address=cluster.address)
    victim = workers[-1] if args["remove_worker"] else None
    removed = {}

    def remove_when_busy() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = [e for e in _log_events(args["run_dir"]) if e["event"] == "start" and e["node"] == victim.node_id]
            if started:
                cluster.remove_node(victim, allow_graceful=False)
                removed.update(call_id=started[0]["call_id"], at=time.monotonic())
                return
            time.sleep(0.1)

    killer = threading.Thread(target=remove_when_busy, daemon=True) if victim else None
    if killer:
        killer.start()
    report = run_batch(settings, analyze_fn=_node_standin(args["run_dir"]))
    if killer:
        killer.join(timeout=30)
    actors = [a for a in ray._private.state.actors().values() if a["ActorClassName"] == "ClipModelServer"]
    out = {
        "report": report.to_dict(),
        "head": cluster.head_node.node_id,
        "cpu_nodes": [w.node_id for w in workers],
        "gpu_node": gpu_node.node_id,
        "victim": victim.node_id if victim else None,
        "removed_call": removed.get("call_id"),
        "clip_actor_nodes": [a["Address"]["NodeID"] for a in actors],
        "events": _log_events(args["run_dir"]),
    }
    ray.shutdown()
    cluster.shutdown()
    return out


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_onnx(tmp_path_factory) -> Path:
    """MAE-DFER's clip geometry with a tiny trunk (as tests/e2e/test_vision_clips.py)."""
    from model_scripts import load_model_script

    from pipeline.networks.lgi_former import LGIFormerConfig
    from pipeline.networks.mae_dfer_checkpoint import export_checkpoint_onnx

    config = LGIFormerConfig(embed_dim=32, depth=1, num_heads=2)
    root = tmp_path_factory.mktemp("clipmodel")
    checkpoint = load_model_script("build_test_mae_dfer_checkpoint").build_test_checkpoint(root / "checkpoint.pth", config)
    return export_checkpoint_onnx(str(checkpoint), root / "mae-dfer-tiny.onnx", config).onnx_path


def _run_driver(settings, run_dir: Path, *, remove_worker: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS_DIR), str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
           "CALLAFFECT_TEST_ANALYZE_S": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    args = {"settings": settings.to_dict(), "cpu_workers": 2, "remove_worker": remove_worker, "run_dir": str(run_dir)}
    proc = subprocess.run([sys.executable, __file__, json.dumps(args)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _curated_counts(settings, calls: list[str]) -> dict[str, dict[str, int]]:
    """Per call: manifests committed, and rows of the `calls` table and of `stage_metrics`."""
    from stack_helpers import read_curated_parquet

    from pipeline.storage import object_store
    from pipeline.storage.curated import CuratedStore

    client = object_store.s3_client(settings.s3)
    manifests = [m.call_id for _, m in CuratedStore(settings).manifests()]
    keys = [o.key for o in object_store.list_objects(client, settings.s3.curated_bucket, settings.s3.curated_prefix)]
    counts = {}
    for call_id in calls:
        rows = {}
        for table in ("calls", "stage_metrics"):
            parts = [k for k in keys if k.startswith(f"{settings.s3.curated_prefix}{table}/") and f"/call_id={call_id}/" in k]
            rows[table] = sum(read_curated_parquet(settings, k).metadata.num_rows for k in parts)
        counts[call_id] = {"manifests": manifests.count(call_id), **rows}
    return counts


def test_calls_run_on_cpu_nodes_the_clip_actor_on_the_gpu_node_and_a_lost_node_commits_each_call_once(
        settings, clip_onnx, tmp_path):
    from stack_helpers import put_calls

    from pipeline.settings import VisionSettings

    calls = [f"mn-{i}" for i in range(6)]
    put_calls(settings, calls, DAY)
    settings = dataclasses.replace(settings, vision=dataclasses.replace(VisionSettings(), clip_model=str(clip_onnx)))
    out = _run_driver(settings, tmp_path, remove_worker=True)

    report = out["report"]
    assert sorted(report["ok"]) == calls and report["failed"] == {} and report["quarantined"] == {}, report
    starts = [e for e in out["events"] if e["event"] == "start"]
    ends = [e for e in out["events"] if e["event"] == "end"]
    # Call tasks ran on the CPU worker nodes only: never on the head (0 CPUs) or the GPU node.
    assert {e["node"] for e in starts} <= set(out["cpu_nodes"]), (starts, out)
    assert out["victim"] in {e["node"] for e in starts}
    # The shared clip actor was placed on the node that declares the GPU, and answered every call.
    assert out["clip_actor_nodes"] == [out["gpu_node"]]
    assert sorted(e["call_id"] for e in ends) == calls and all(e["clip_probs"] == 7 for e in ends)
    # The call running on the removed node started again elsewhere and finished there, once.
    lost = out["removed_call"]
    assert lost in calls
    assert [e["node"] for e in starts if e["call_id"] == lost][0] == out["victim"]
    assert all(e["node"] != out["victim"] for e in ends if e["call_id"] == lost)
    # Exactly once in the curated store: one manifest, one call row, one row per stage.
    from factories import make_call_tables

    # What one analysis writes (stack_helpers.tables_analyze's tables): a second commit would add to it.
    written = {c: len(make_call_tables(c, DAY, duration_s=60.0, seed=len(c))["stage_metrics"]) for c in calls}
    assert all(written.values())
    assert _curated_counts(settings, calls) == {c: {"manifests": 1, "calls": 1, "stage_metrics": written[c]} for c in calls}
    from pipeline.storage import object_store

    client = object_store.s3_client(settings.s3)
    assert not list(object_store.list_objects(client, settings.s3.curated_bucket, f"{settings.s3.ops_prefix}leases/"))


if __name__ == "__main__":
    print(json.dumps(_drive(json.loads(sys.argv[1]))))
