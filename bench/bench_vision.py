"""Speed and memory of the vision branch (embedded profile: 5 fps, MTCNN + tracking + the
light expression model + lip-motion linking), against fer's own video analysis on the same clip.

    .venv/bin/python bench/bench_vision.py [--tiles 2] [--minutes 0] [--fer-venv PATH] [--out data/bench]

Prints JSON: per-stage seconds, video seconds per wall second (throughput), real-time factor,
peak RSS. With a fer venv (``make bench-vision`` builds it from bench/requirements-fer.txt), fer's
``Video.analyze`` runs on the same clip twice: at its default (every frame) and every 5th frame
(the same 5 fps as ours). ``--minutes N`` also loops the clip into an N-minute video and runs the
vision branch on it in a fresh process, for its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import subprocess
import sys
import time
import warnings
from fractions import Fraction
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _turns_from_rttm(path: Path, repeat: int = 1, period: float = 0.0):
    """The RTTM's turns, repeated ``repeat`` times ``period`` seconds apart (for a looped video)."""
    from pyannote.core import Annotation, Segment

    from pipeline.devtools.evaluation import load_rttm

    (once,) = load_rttm(path).values()
    turns = Annotation()
    for k in range(repeat):
        for seg, track, label in once.itertracks(yield_label=True):
            turns[Segment(seg.start + k * period, seg.end + k * period), (k, track)] = label
    return turns


def _run_vision(video: str, rttm: str, repeat: int, period: float) -> dict:
    """The vision branch on one video, models loaded first (as on a warm worker)."""
    from pipeline.stages.vision import face_branch
    from pipeline.settings import load_settings

    settings = load_settings()
    t = time.perf_counter()
    face_branch._detector(settings.vision.min_face_px, settings.vision.threads)
    face_branch._expression_model(str(Path(settings.model_store.cache_dir).expanduser()), settings.vision.threads)
    load_s = time.perf_counter() - t
    turns = _turns_from_rttm(Path(rttm), repeat, period)
    t = time.perf_counter()
    result = face_branch.analyze_video(video, turns, settings, readable=turns.labels())
    wall = time.perf_counter() - t
    return {
        "load_s": round(load_s, 2), "wall_s": round(wall, 2), "frames_sampled": result.frames_sampled,
        "tracks": len(result.tracks), "linked": sum(t.speaker is not None for t in result.tracks),
        "face_affect_rows": len(result.affect), "stage_seconds": result.seconds, "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _run_vision_child(video: str, rttm: str, repeat: int, period: float, queue) -> None:
    queue.put(_run_vision(video, rttm, repeat, period))


def _loop_video(src: Path, dst: Path, minutes: float) -> float:
    """Re-encode ``src`` back to back until ``minutes`` long (video only), streaming."""
    import av

    with av.open(str(src)) as probe:
        stream = probe.streams.video[0]
        rate, width, height = int(round(float(stream.average_rate))), stream.width, stream.height
    frames_needed = int(minutes * 60 * rate)
    written = 0
    with av.open(str(dst), "w") as out:
        enc = out.add_stream("libx264", rate=rate)
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.options = {"preset": "veryfast", "crf": "23"}
        while written < frames_needed:
            with av.open(str(src)) as inp:
                for frame in inp.decode(video=0):
                    if written >= frames_needed:
                        break
                    frame.pts, frame.time_base = written, Fraction(1, rate)
                    for packet in enc.encode(frame):
                        out.mux(packet)
                    written += 1
        for packet in enc.encode():
            out.mux(packet)
    return written / rate


def _fer(fer_python: Path, clip: Path, frequency: int) -> dict:
    import tempfile

    # fer writes data.csv into its working directory: give it a throwaway one.
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run([str(fer_python), str(ROOT / "bench" / "fer_video_baseline.py"), str(clip.resolve()),
                               "--frequency", str(frequency)], capture_output=True, text=True, timeout=3600, cwd=cwd)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=0.0)
    parser.add_argument("--fer-venv", default=str(Path.home() / ".cache/callaffect/bench-fer-venv"))
    parser.add_argument("--out", default="data/bench")
    args = parser.parse_args()

    from pipeline.stages.vision.video_frames import probe_video
    from pipeline.devtools.synth_video import generate_video_call

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = generate_video_call(out, f"vision-bench-{args.tiles}t", seed=args.seed, n_tiles=args.tiles)
    info = probe_video(truth.video_path)
    clip_s = info.duration_s or truth.duration_s
    ours = _run_vision(str(truth.video_path), str(truth.rttm_path), 1, 0.0)
    ours["video_s_per_wall_s"] = round(clip_s / ours["wall_s"], 2)
    ours["rtf"] = round(ours["wall_s"] / clip_s, 4)
    report = {
        "host": {"machine": platform.machine(), "cpus": multiprocessing.cpu_count(), "python": platform.python_version()},
        "clip": {"path": str(truth.video_path), "seconds": round(clip_s, 2), "fps": info.fps,
                 "size": [info.width, info.height], "tiles": args.tiles},
        "callaffect_vision": ours,
    }

    fer_python = Path(args.fer_venv) / "bin" / "python"
    if fer_python.exists():
        for label, frequency in (("fer_every_frame", 1), ("fer_every_5th_frame", max(1, int(round(info.fps / 5))))):
            fer = _fer(fer_python, truth.video_path, frequency)
            if "analyze_s" in fer:
                fer["video_s_per_wall_s"] = round(clip_s / fer["analyze_s"], 2)
                fer["callaffect_speedup"] = round(fer["analyze_s"] / ours["wall_s"], 2)
            report[label] = fer
    else:
        report["fer"] = f"skipped: no fer venv at {args.fer_venv} (make bench-vision builds it)"

    if args.minutes:
        long_path = out / f"vision-long-{int(args.minutes)}min.mp4"
        t = time.perf_counter()
        long_s = _loop_video(truth.video_path, long_path, args.minutes)
        encode_s = time.perf_counter() - t
        repeat = int(long_s // truth.duration_s) + 1
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_run_vision_child, args=(str(long_path), str(truth.rttm_path), repeat, clip_s, queue))
        child.start()
        long = queue.get()
        child.join()
        long.update({"video_s": round(long_s, 1), "rtf": round(long["wall_s"] / long_s, 4), "build_video_s": round(encode_s, 1)})
        report["long_call"] = long

    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
