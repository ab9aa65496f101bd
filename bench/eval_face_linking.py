"""Face <-> speaker linking against a known truth: the generated linking set.

Generates video calls (`pipeline.devtools.synth_video.generate_linking_set`: 2-4 tiles, silent observers,
speakers heard but not shown, gallery and pinned speaker view, overlapped speech), then runs the
product's own vision pass (`pipeline.stages.vision.face_branch.analyze_video`: sampled frames, MTCNN with O-Net
refinement, quality gate, tracks, mouth motion, `link_tracks`) against the truth RTTM and, with
``--hypothesis``, the whole of `pipeline.call.analyze.analyze_call` (linking against the diarization
it finds in the mp4's audio; its face_tracks table is scored).

Each track is scored by the tile its mean box lies in: right when a speaking tile's track goes to
its speaker (with the hypothesis: to the hypothesis speaker that overlaps that speaker most) or a
silent tile's track stays unlinked. Prints JSON and writes it to OUT/face_linking.json.

    .venv/bin/python bench/eval_face_linking.py [--calls 10] [--seed 0] [--hypothesis]
        [--out data/eval/face_linking]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyannote.core import Annotation  # noqa: E402

from pipeline.devtools.evaluation import load_rttm  # noqa: E402
from pipeline.devtools.synth_video import VideoCallTruth, generate_linking_set  # noqa: E402

MIN_SAMPLES = 20  # usable faces (4 s at 5 fps) a track needs before it can be linked


def tile_of(box: tuple[float, float, float, float], truth: VideoCallTruth):
    """The tile the track's mean box centre lies in (None: a detection off every tile).
    Boxes are shares of the frame, so the sampled frames' scaling does not matter."""
    cx, cy = (box[0] + box[2]) / 2 * truth.size[0], (box[1] + box[3]) / 2 * truth.size[1]
    return next((t for t in truth.tiles if t.box[0] <= cx < t.box[2] and t.box[1] <= cy < t.box[3]), None)


def best_overlap(reference: Annotation, hypothesis: Annotation) -> dict[str, str]:
    """Each hypothesis speaker -> the reference speaker it overlaps most."""
    out = {}
    for hyp in hypothesis.labels():
        hyp_time = hypothesis.label_timeline(hyp)
        overlap = {ref: hyp_time.crop(reference.label_timeline(ref), mode="intersection").duration()
                   for ref in reference.labels()}
        out[hyp] = max(overlap, key=overlap.get)
    return out


def score_tracks(tracks: list[dict], truth: VideoCallTruth, speaker_truth: dict[str, str] | None = None) -> list[dict]:
    """One row per track (face_tracks columns): its tile, the truth, the link and the outcome."""
    rows = []
    for track in tracks:
        tile = tile_of((track["box_x0"], track["box_y0"], track["box_x1"], track["box_y1"]), truth)
        speaker = track["speaker"]
        linked_as = (speaker_truth or {}).get(speaker, speaker) if speaker else None
        if tile is None:
            outcome = "stray_linked" if speaker else "stray_unlinked"
        elif tile.silent:
            outcome = "silent_linked" if speaker else "silent_unlinked"
        else:
            outcome = "unlinked" if speaker is None else "correct" if linked_as == tile.speaker else "wrong"
        rows.append({"track": track["track_id"], "tile": None if tile is None else tile.index,
                     "truth": None if tile is None else tile.speaker, "linked": speaker, "linked_as": linked_as,
                     "confidence": round(track["link_confidence"], 3), "outcome": outcome,
                     "samples": track["n_usable"], "evidence": track["link_evidence"]})
    return rows


def summarise(rows: list[dict]) -> dict:
    """Outcome counts over the tracks long enough to be linked (a tracker's few-sample fragment
    cannot be, and is counted apart), and accuracies."""
    short = [r for r in rows if r["samples"] < MIN_SAMPLES]
    rows = [r for r in rows if r["samples"] >= MIN_SAMPLES]
    count = {k: sum(r["outcome"] == k for r in rows) for k in
             ("correct", "wrong", "unlinked", "silent_linked", "silent_unlinked", "stray_linked", "stray_unlinked")}
    on_tiles = len(rows) - count["stray_linked"] - count["stray_unlinked"]
    speaking = count["correct"] + count["wrong"] + count["unlinked"]
    linked = count["correct"] + count["wrong"] + count["silent_linked"] + count["stray_linked"]
    return {
        "tracks": len(rows), "short_tracks": len(short), "tracks_on_tiles": on_tiles, "speaking_tracks": speaking,
        **count,
        # Right decision: a speaking tile's track to its speaker, a silent tile's left unlinked.
        "accuracy": round((count["correct"] + count["silent_unlinked"]) / max(on_tiles, 1), 4),
        "speaking_linked_right": round(count["correct"] / max(speaking, 1), 4),
        "precision": round(count["correct"] / max(linked, 1), 4),
    }


def _track_rows(result) -> list[dict]:
    return [{"track_id": t.track_id, "box_x0": t.box[0], "box_y0": t.box[1], "box_x1": t.box[2], "box_y1": t.box[3],
             "speaker": t.speaker, "link_confidence": t.link_confidence, "n_usable": t.n_usable,
             "link_evidence": t.link_evidence} for t in result.tracks]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hypothesis", action="store_true", help="also run analyze_call and score its face_tracks")
    parser.add_argument("--out", default="data/eval/face_linking")
    args = parser.parse_args()

    from pipeline.stages.vision import face_branch
    from pipeline.settings import load_settings

    settings = load_settings()
    out = Path(args.out)
    t0 = time.perf_counter()
    calls = generate_linking_set(out / "media", seed=args.seed, n_calls=args.calls)
    generate_s = time.perf_counter() - t0

    per_call, truth_rows, hyp_rows = [], [], []
    vision_s = 0.0
    for call in calls:
        reference = next(iter(load_rttm(call.rttm_path).values()))
        t = time.perf_counter()
        result = face_branch.analyze_video(call.video_path, reference, settings, readable=reference.labels())
        vision_s += time.perf_counter() - t
        rows = score_tracks(_track_rows(result), call)
        truth_rows += rows
        entry = {"call": call.call_id, "tiles": len(call.tiles), "silent_tiles": len(call.silent_tiles),
                 "audio_only": len(call.audio_only), "layout": call.layout, "size": call.size,
                 "overlap": call.overlap, "duration_s": round(call.duration_s, 1),
                 "truth": summarise(rows), "tracks": rows}
        if args.hypothesis:
            from pipeline.call.analyze import analyze_call

            analysed = analyze_call(call.video_path, call.call_id, settings=settings,
                                    metadata=json.loads(call.metadata_path.read_text()))
            hyp_path = out / "hyp" / f"{call.call_id}.rttm"
            hyp_path.parent.mkdir(parents=True, exist_ok=True)
            hyp_path.write_text(analysed.rttm)
            hypothesis = next(iter(load_rttm(hyp_path).values()), Annotation())
            rows = score_tracks(analysed.tables["face_tracks"].to_pylist(), call, best_overlap(reference, hypothesis))
            hyp_rows += rows
            entry["hypothesis"] = {**summarise(rows), "speakers_hyp": len(hypothesis.labels()),
                                   "speakers_ref": len(reference.labels()), "tracks": rows}
        per_call.append(entry)

    report = {
        "bench": "face_speaker_linking", "calls": len(calls), "seed": args.seed,
        "sample_fps": settings.vision.sample_fps, "video_s": round(sum(c.duration_s for c in calls), 1),
        "generate_s": round(generate_s, 1), "vision_s": round(vision_s, 1),
        "against_truth_rttm": summarise(truth_rows),
        **({"against_hypothesis": summarise(hyp_rows)} if args.hypothesis else {}),
        "per_call": per_call,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "face_linking.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_call"}, indent=2))
    for entry in per_call:
        print(entry["call"], entry["layout"], f"tiles={entry['tiles']} silent={entry['silent_tiles']} "
              f"audio_only={entry['audio_only']}", entry["truth"]["accuracy"],
              [(r["tile"], r["truth"], r["linked"], r["confidence"]) for r in entry["tracks"]])
        if "hypothesis" in entry:
            print("   hypothesis", entry["hypothesis"]["accuracy"],
                  [(r["tile"], r["truth"], r["linked_as"], r["confidence"]) for r in entry["hypothesis"]["tracks"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
