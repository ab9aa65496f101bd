"""The voice arousal cues of the two backends side by side: the default ``bs1770-pyin`` (BS.1770
loudness + pYIN pitch) against openSMILE's eGeMAPS (``opensmile-egemaps``, non-commercial).

Each call is analysed in full once per backend (`analyze_call`, the same settings but
``voice.backend``); everything before the voice cues is deterministic, so both runs have the
same speaker windows and differ only in ``voice_arousal`` and what follows from it. Prints JSON
(and writes it to OUT/voice_cues.json):

- ``windows``: per-window voice arousal of the two backends on the windows where both gave
  one: Pearson and Spearman correlation, n, mean absolute difference; for the generated set,
  and for each real call in ``data/real_call/`` (bench/fetch_real_call.py) when it is there;
- ``flags`` (generated set, per backend): flags, flagged calls, and against the truth (the
  customer's scripted frustrated stretch, `SyntheticCall.frustrated_span`): a flag is right
  when it overlaps the stretch; precision = right flags / flags; recall = frustrated calls
  with a right flag / frustrated calls; call-level precision and recall of "call flagged";
  and the separation: the customer's mean voice arousal inside the stretch minus outside;
- ``seconds``: the voice_features stage per backend, and its real-time factor.

    .venv/bin/python bench/voice_cues_compare.py [--per-condition 1] [--seed 0] [--only 2spk]
        [--no-real] [--no-customer-levels] [--out data/voice_cues]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
BACKENDS = ("opensmile-egemaps", "bs1770-pyin")
REAL_DIR = Path("data/real_call")
REAL_CALLS = ("pyannote_sample", "callfriend_know", "callfriend_know.stereo")


def _analyse(audio: Path, call_id: str, metadata: dict, settings) -> dict:
    """One backend's run of a call: voice arousal per speaker window, flags, voice seconds."""
    from pipeline.call.analyze import analyze_call

    result = analyze_call(audio, call_id, settings=settings, metadata=metadata)
    if not result.ok:
        return {"status": result.manifest.status, "reason": result.manifest.reason}
    affect = result.tables["speaker_affect"].to_pylist()
    return {
        "status": "ok",
        "duration_s": result.manifest.duration_s,
        "voice_s": result.manifest.stage_seconds.get("voice_features", 0.0),
        "windows": {(r["speaker"], round(r["start_s"], 2)): r["voice_arousal"] for r in affect},
        "roles": {r["speaker"]: r["role"] for r in affect},
        "customer_windows": [(r["start_s"], r["end_s"], r["voice_arousal"]) for r in affect if r["role"] == "customer"],
        "flags": [(f["start_s"], f["end_s"]) for f in result.tables["qa_flags"].to_pylist()],
    }


def _correlation(pairs: list[tuple[float, float]]) -> dict:
    import numpy as np
    from scipy import stats

    if len(pairs) < 3:
        return {"n": len(pairs), "pearson": None, "spearman": None}
    a, b = np.array(pairs).T
    return {
        "n": len(pairs),
        "pearson": round(float(stats.pearsonr(a, b).statistic), 3),
        "spearman": round(float(stats.spearmanr(a, b).statistic), 3),
        "mean_abs_diff": round(float(np.mean(np.abs(a - b))), 3),
    }


def _pairs(runs: dict) -> tuple[list[tuple[float, float]], int]:
    """(opensmile, bs1770) arousal on the windows both scored; and the windows only one run had."""
    first, second = (runs[b]["windows"] for b in BACKENDS)
    both = [(first[k], second[k]) for k in first.keys() & second.keys() if first[k] is not None and second[k] is not None]
    return both, len(first.keys() ^ second.keys())


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _flag_scores(calls: list[dict], backend: str) -> dict:
    flags = right = flagged_calls = frustrated = found = flagged_frustrated = 0
    inside, outside = [], []
    for call in calls:
        run, span = call["runs"][backend], call["frustrated_span"]
        flags += len(run["flags"])
        flagged_calls += bool(run["flags"])
        if span is not None:
            frustrated += 1
            hits = [f for f in run["flags"] if _overlaps(f, span)]
            right += len(hits)
            found += bool(hits)
            flagged_frustrated += bool(run["flags"])
            for start, end, arousal in run["customer_windows"]:
                if arousal is not None:
                    (inside if _overlaps((start, end), span) else outside).append(arousal)
    mean = lambda v: round(sum(v) / len(v), 3) if v else None  # noqa: E731
    return {
        "flags": flags,
        "right_flags": right,
        "precision": round(right / flags, 3) if flags else None,
        "recall": round(found / frustrated, 3) if frustrated else None,
        "flagged_calls": flagged_calls,
        "frustrated_calls": frustrated,
        "call_precision": round(flagged_frustrated / flagged_calls, 3) if flagged_calls else None,
        "call_recall": round(flagged_frustrated / frustrated, 3) if frustrated else None,
        "customer_arousal_inside_minus_outside": (
            round(mean(inside) - mean(outside), 3) if inside and outside else None),
    }


def _speed(calls: list[dict]) -> dict:
    out = {}
    for backend in BACKENDS:
        runs = [c["runs"][backend] for c in calls if c["runs"][backend]["status"] == "ok"]
        seconds, audio = sum(r["voice_s"] for r in runs), sum(r["duration_s"] for r in runs)
        out[backend] = {"voice_features_s": round(seconds, 2), "audio_s": round(audio, 1),
                        "rtf": round(seconds / audio, 4) if audio else None}
    return out


def _run_both(audio: Path, call_id: str, metadata: dict, base) -> dict:
    from pipeline.settings import VoiceSettings

    return {b: _analyse(audio, call_id, metadata, dataclasses.replace(base, voice=VoiceSettings(backend=b)))
            for b in BACKENDS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-condition", type=int, default=1, help="generated calls per condition")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", default=[], help="only generated calls whose id contains this")
    parser.add_argument("--no-real", action="store_true", help="skip the real calls in data/real_call/")
    parser.add_argument("--no-customer-levels", action="store_true",
                        help="leave out the stereo calls with the customer 0/5/10 dB quieter")
    parser.add_argument("--out", default="data/voice_cues")
    args = parser.parse_args()

    from pipeline.devtools.synth.call_sets import TEST_SET_CUSTOMER_GAINS_DB, generate_test_set
    from pipeline.settings import load_settings

    base = load_settings()
    out = Path(args.out)
    started = time.perf_counter()
    report: dict = {"backends": list(BACKENDS), "real": {}, "generated": None}

    if not args.no_real:
        for name in REAL_CALLS:
            if (REAL_DIR / f"{name}.wav").exists():
                runs = _run_both(REAL_DIR / f"{name}.wav", name, {}, base)
                if all(r["status"] == "ok" for r in runs.values()):
                    pairs, unmatched = _pairs(runs)
                    report["real"][name] = {**_correlation(pairs), "unmatched_windows": unmatched}
                else:
                    report["real"][name] = {b: r.get("reason") for b, r in runs.items()}
                print(f"{name}: {report['real'][name]}", file=sys.stderr, flush=True)

    gains = () if args.no_customer_levels else TEST_SET_CUSTOMER_GAINS_DB
    generated = generate_test_set(out / "testset" / "media", seed=args.seed, per_condition=args.per_condition,
                                  truth_dir=out / "testset" / "truth", customer_gains_db=gains)
    generated = [c for c in generated if not args.only or any(s in c.call_id for s in args.only)]
    calls, all_pairs, unmatched = [], [], 0
    for call in generated:
        metadata = json.loads(call.metadata_path.read_text())
        runs = _run_both(call.audio_path, call.call_id, metadata, base)
        if not all(r["status"] == "ok" for r in runs.values()):
            print(f"{call.call_id}: not analysed {[r.get('reason') for r in runs.values()]}", file=sys.stderr)
            continue
        pairs, missing = _pairs(runs)
        all_pairs += pairs
        unmatched += missing
        calls.append({"call_id": call.call_id, "frustrated_span": call.frustrated_span, "runs": runs,
                      "windows": _correlation(pairs)})
        print(f"{call.call_id}: windows {calls[-1]['windows']}, flags "
              + ", ".join(f"{b} {len(runs[b]['flags'])}" for b in BACKENDS), file=sys.stderr, flush=True)

    report["generated"] = {
        "calls": len(calls),
        "windows": {**_correlation(all_pairs), "unmatched_windows": unmatched},
        "flags": {b: _flag_scores(calls, b) for b in BACKENDS},
        "seconds": _speed(calls),
        "per_call": {c["call_id"]: c["windows"] for c in calls},
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "voice_cues.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
