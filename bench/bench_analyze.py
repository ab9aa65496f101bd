"""Speed of the per-call analysis on the demo calls: JSON with per-stage seconds, real-time
factor and peak RSS. Models are loaded once (as on a Ray worker); the cold start is reported
apart.

    .venv/bin/python bench/bench_analyze.py [--calls 3] [--minutes 0] [--out data/bench]

--minutes N also builds one long call of about N minutes by concatenating demo calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

warnings.filterwarnings("ignore")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _long_call(calls, minutes: float, out: Path) -> Path:
    from pipeline.storage.media import decode_audio

    pieces, total = [], 0.0
    while total < minutes * 60:
        for call in calls:
            audio = decode_audio(call.audio_path).samples
            pieces.append(audio)
            total += len(audio) / 16000
    path = out / f"long-{int(minutes)}min.wav"
    sf.write(path, np.concatenate(pieces), 16000, subtype="PCM_16")
    return path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=0.0)
    parser.add_argument("--out", default="data/bench")
    args = parser.parse_args()

    from pipeline.call.analyze import analyze_call
    from pipeline.settings import load_settings
    from pipeline.devtools.synth.call_sets import generate_demo_set

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    calls = generate_demo_set(out, n_calls=args.calls, seed=7)
    inputs = [(c.call_id, c.audio_path) for c in calls]
    if args.minutes:
        long_path = _long_call(calls, args.minutes, out)
        inputs.append((long_path.stem, long_path))

    # The first call in a process pays for loading every model; a Ray worker pays it once.
    t0 = time.perf_counter()
    analyze_call(calls[0].audio_path, "warmup", settings=settings)
    first_call_s = time.perf_counter() - t0

    results = []
    for call_id, path in inputs:
        rss_before = _peak_rss_mb()
        t = time.perf_counter()
        result = analyze_call(path, call_id, settings=settings)
        wall = time.perf_counter() - t
        duration = result.manifest.duration_s or 0.0
        results.append({
            "call_id": call_id,
            "status": result.manifest.status,
            "audio_s": duration,
            "wall_s": round(wall, 3),
            "rtf": round(wall / duration, 4) if duration else None,
            "stages": {s: {"seconds": v, "rtf": round(v / duration, 5) if duration else None}
                       for s, v in result.manifest.stage_seconds.items()},
            "peak_rss_mb_after": round(_peak_rss_mb(), 1),
            "peak_rss_grew_mb": round(_peak_rss_mb() - rss_before, 1),
        })

    audio_total = sum(r["audio_s"] for r in results)
    wall_total = sum(r["wall_s"] for r in results)
    stage_totals: dict[str, float] = {}
    for r in results:
        for stage, v in r["stages"].items():
            stage_totals[stage] = stage_totals.get(stage, 0.0) + v["seconds"]
    report = {
        "bench": "analyze_call",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "model_load_s": round(first_call_s - results[0]["wall_s"], 2),  # first call minus the same call warm
        "calls": results,
        "total": {
            "audio_s": round(audio_total, 2),
            "wall_s": round(wall_total, 2),
            "rtf": round(wall_total / audio_total, 4) if audio_total else None,
            "stages": {s: {"seconds": round(v, 3), "rtf": round(v / audio_total, 5)} for s, v in stage_totals.items()},
            "peak_rss_mb": round(_peak_rss_mb(), 1),
        },
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
