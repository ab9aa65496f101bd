"""fer's own video analysis on one clip, timed: the baseline bench_vision.py compares against.

Runs in the bench-only venv (bench/requirements-fer.txt: fer with TensorFlow), never in the
pipeline's. Prints JSON: import and model-load seconds apart from the analysis itself.

    <bench-fer-venv>/bin/python bench/fer_video_baseline.py CLIP.mp4 [--frequency N]

--frequency N analyses every Nth frame (fer's own option; 1 = every frame, its default).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip")
    parser.add_argument("--frequency", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    t0 = time.perf_counter()
    from fer.classes import Video
    from fer.fer import FER

    imported = time.perf_counter()
    detector = FER()  # fer's default: OpenCV Haar cascade + its quantised TFLite mini-Xception
    loaded = time.perf_counter()
    with tempfile.TemporaryDirectory() as outdir:
        video = Video(args.clip, outdir=outdir)
        frames = video.analyze(detector, display=False, frequency=args.frequency, save_frames=False,
                               save_video=False, annotate_frames=False, zip_images=False)
    done = time.perf_counter()
    faces = sum(len(f) if isinstance(f, list) else 1 for f in frames) if frames else 0
    print(json.dumps({
        "tool": "fer.classes.Video.analyze", "frequency": args.frequency,
        "import_s": round(imported - t0, 2), "load_s": round(loaded - imported, 2),
        "analyze_s": round(done - loaded, 2), "results": len(frames or []), "faces": faces,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
