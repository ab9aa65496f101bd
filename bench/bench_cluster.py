"""Batch throughput on a multi-node Ray cluster on one machine: calls per minute with 1, 2, ...
worker nodes of 1 CPU each (ray.cluster_utils.Cluster, a head with no CPUs), the real
pipeline.jobs.batch.run_batch against moto's S3 on 127.0.0.1, the real analysis on generated
calls. JSON on stdout.

    .venv/bin/python bench/bench_cluster.py [--calls 6] [--workers 1,2] [--out data/bench-cluster]

Every worker process loads the models once (the cold start is inside wall_s, as in a night's
batch); each worker count gets fresh buckets and a fresh cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path

warnings.filterwarnings("ignore")


def _run(settings, calls, workers: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.jobs.batch import run_batch
    from pipeline.storage import object_store
    from pipeline.storage.curated import CuratedStore

    client = object_store.s3_client(settings.s3)
    for path in [*(c.audio_path for c in calls), *(c.metadata_path for c in calls)]:
        object_store.upload_file(client, path, settings.s3.raw_bucket, f"{settings.s3.raw_prefix}2024-05-02/{path.name}")

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(workers)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        run = dataclasses.replace(settings, ray=dataclasses.replace(settings.ray, address=cluster.address))
        started = time.perf_counter()
        report = run_batch(run)
        wall = time.perf_counter() - started
    finally:
        ray.shutdown()
        cluster.shutdown()
    manifests = [m for _, m in CuratedStore(settings).manifests()]
    audio_s = sum(m.duration_s or 0.0 for m in manifests if m.status == "ok")
    derived = [o for o in object_store.list_objects(client, settings.s3.curated_bucket) if "/call_id=" in o.key]
    stage_s = Counter()
    for m in manifests:
        stage_s.update(m.stage_seconds)
    return {
        "workers": workers,
        "nodes": len(nodes),
        "calls": len(report.ok),
        "not_ok": len(calls) - len(report.ok),
        "audio_min": round(audio_s / 60, 2),
        "wall_s": round(wall, 2),
        "calls_per_min": round(len(report.ok) / wall * 60, 2),
        "audio_min_per_wall_min": round(audio_s / wall, 2),
        "stage_seconds": {k: round(v, 2) for k, v in stage_s.most_common()},
        # What `callaffect cost` needs when it cannot measure a curated root itself.
        "derived_bytes_per_call_minute": round(sum(o.size for o in derived) / (audio_s / 60)) if audio_s else None,
        "objects_per_call": round(len(derived) / len(manifests), 2) if manifests else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker node counts (1 CPU each)")
    parser.add_argument("--out", default="data/bench-cluster")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # nodes on 127.0.0.1 only
    os.environ.pop("RAY_ADDRESS", None)

    from pipeline.devtools.s3server import LocalS3
    from pipeline.devtools.synth.call_sets import generate_demo_set
    from pipeline.settings import S3Settings, load_settings
    from pipeline.storage import object_store

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calls = generate_demo_set(out, n_calls=args.calls, seed=args.seed)
    base = load_settings()
    runs = []
    with LocalS3() as server:
        for workers in (int(w) for w in args.workers.split(",")):
            unique = uuid.uuid4().hex[:8]
            s3 = S3Settings(endpoint_url=server.endpoint_url, raw_bucket=f"raw-{unique}", curated_bucket=f"cur-{unique}")
            client = object_store.s3_client(s3)
            object_store.ensure_bucket(client, s3.raw_bucket)
            object_store.ensure_bucket(client, s3.curated_bucket)
            runs.append(_run(dataclasses.replace(base, s3=s3), calls, workers))
            print(json.dumps(runs[-1]), file=sys.stderr)
    report = {
        "bench": "cluster",
        "load_average_after": [round(x, 2) for x in os.getloadavg()],  # the machine may be shared
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "analysis": "pipeline.call.analyze.analyze_call (embedded CPU profile)",
        "runs": runs,
        "speedup": {str(r["workers"]): round(r["calls_per_min"] / runs[0]["calls_per_min"], 2) for r in runs},
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
