"""Review-app data at the scale of a busy month: committed calls with flags under a local curated
root, QA verdicts in the review store, the quality gate, and the DuckDB marts built from them.

    .venv/bin/python bench/review_data.py --out DIR [--calls 1000] [--flags-per-call 10]
        [--verdicts 300] [--gate-sample 20] [--seed 0]

DIR/curated is the curated root, DIR/marts.duckdb the marts; what each step took goes to stdout
as JSON. bench/bench_review.py runs this in a process of its own: the gate's great-expectations
leaves a heap about three times a served app's, and every full GC pass in the timed requests
would walk all of it.

The calls (4 to 8 minutes each, over 30 days) are tests/factories.py's tables, laid out as the
batch commits them, with ``--flags-per-call`` customer-frustration flags each and no snippet
audio. The gate costs about a second a call, so only ``--gate-sample`` calls, spread through the
set, are left for it to check; the others are committed already stamped as passed by the same
suite (their tables come from the same generator). ``--gate-sample`` equal to ``--calls`` gates
every call. The verdicts' reviewers have no accounts: the caller adds the ones it signs in with.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the curated-layout factories the tests use

from factories import CUSTOMER, curated_objects, make_call_tables, write_local  # noqa: E402

from pipeline.jobs.marts import build_marts  # noqa: E402
from pipeline.jobs.quality_gate import SUITE, gate_committed_calls  # noqa: E402
from pipeline.schemas import to_table  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402
from pipeline.storage.reviews import ReviewStore, Verdict  # noqa: E402

REVIEWERS = ("qa.first", "qa.second", "qa.third")
RULE_VERSION = "frustration-v1"
FIRST_DAY, DAYS = date(2024, 5, 1), 30


def _flags_table(tables: dict, call_id: str, n_flags: int, rng: random.Random):
    """``n_flags`` customer spans spread evenly over the call, each with the mean valence, arousal
    and confidence of the customer's affect windows it covers and the utterances it holds."""
    duration = tables["calls"].column("duration_s")[0].as_py()
    affect = [a for a in tables["speaker_affect"].to_pylist() if a["speaker"] == CUSTOMER]
    utterances = [u for u in tables["utterances"].to_pylist() if u["speaker"] == CUSTOMER]
    slot = duration / n_flags
    rows = []
    for k in range(n_flags):
        start = round(k * slot + 0.1 * slot, 3)
        end = round(start + min(0.6 * slot, 20.0), 3)
        inside = [a for a in affect if a["start_s"] < end and a["end_s"] > start]
        said = [u["utterance_id"] for u in utterances if u["start_s"] < end and u["end_s"] > start]
        rows.append({
            "call_id": call_id, "flag_id": f"{call_id}-f{k}", "flag_type": "customer_frustration",
            "speaker": CUSTOMER, "role": "customer", "start_s": start, "end_s": end,
            "score": round(rng.uniform(0.3, 0.99), 3),
            "confidence": round(sum(a["confidence"] for a in inside) / len(inside), 4) if inside else 0.5,
            "mean_valence": round(sum(a["valence"] for a in inside) / len(inside), 4) if inside else 0.0,
            "mean_arousal": round(sum(a["arousal"] for a in inside) / len(inside), 4) if inside else 0.0,
            "evidence": json.dumps({"utterance_ids": said, "cues": ["valence", "arousal"]}),
            "rule_version": RULE_VERSION,
            "snippet_key": None,
        })
    return to_table("qa_flags", rows)


def write_calls(root: Path, n_calls: int, flags_per_call: int, gate_sample: int, seed: int) -> list[tuple[str, str, str]]:
    """Commit ``n_calls`` calls under ``root``; all but ``gate_sample`` of them already carry a
    passed quality verdict. Returns (call_id, call_date, flag_id) per flag."""
    rng = random.Random(seed)
    gated_every = n_calls // gate_sample if gate_sample else 0
    stamp = {"passed": True, "failures": [], "checked_at": "2024-06-01T12:00:00+00:00", "suite": SUITE}
    flags = []
    for i in range(n_calls):
        call_id, day = f"call-{i:05d}", (FIRST_DAY + timedelta(days=i % DAYS)).isoformat()
        tables = make_call_tables(call_id, day, duration_s=round(rng.uniform(240.0, 480.0), 1), seed=seed + i)
        tables["qa_flags"] = _flags_table(tables, call_id, flags_per_call, rng)
        to_gate = gated_every and i % gated_every == 0 and i // gated_every < gate_sample
        write_local(root, curated_objects(tables, call_id, day, quality=None if to_gate else stamp))
        flags += [(call_id, day, flag_id) for flag_id in tables["qa_flags"].column("flag_id").to_pylist()]
    return flags


def write_verdicts(settings: Settings, root: Path, flags: list, n_verdicts: int, seed: int) -> None:
    """``n_verdicts`` verdicts on distinct random flags, mostly confirmations."""
    store = ReviewStore(settings, root=str(root))
    rng = random.Random(seed)
    for call_id, day, flag_id in rng.sample(flags, min(n_verdicts, len(flags))):
        verdict = rng.choices(("confirmed", "dismissed", "unsure"), weights=(6, 3, 1))[0]
        store.add_verdict(Verdict.new(flag_id, call_id, day, RULE_VERSION, rng.choice(REVIEWERS), verdict))


def build(settings: Settings, out: Path, args: argparse.Namespace) -> dict:
    """The data, the gate over the sample, the marts: what each took. Stops on a gate failure or
    marts that do not hold every call and flag."""
    root, marts = out / "curated", out / "marts.duckdb"
    started = time.perf_counter()
    flags = write_calls(root, args.calls, args.flags_per_call, args.gate_sample, args.seed)
    write_verdicts(settings, root, flags, args.verdicts, args.seed)
    data_s = time.perf_counter() - started
    started = time.perf_counter()
    gated = gate_committed_calls(settings, curated_root=root)
    gate_s = time.perf_counter() - started
    failed = [call_id for call_id, result in gated if not result.passed]
    if failed:
        raise SystemExit(f"the quality gate failed generated calls, e.g. {failed[:3]}: fix the generator")
    report = build_marts(settings, out_path=marts, curated_root=root)
    if report.calls_loaded != args.calls or report.tables["mart_qa_flags"] != len(flags):
        raise SystemExit(f"marts hold {report.calls_loaded} calls and {report.tables['mart_qa_flags']} flags, "
                         f"expected {args.calls} and {len(flags)}")
    return {
        "calls": report.calls_loaded,
        "flags": report.tables["mart_qa_flags"],
        "verdicts": report.tables["fct_qa_verdicts"],
        "data_s": round(data_s, 2),
        "gate": {"calls_checked": len(gated), "seconds": round(gate_s, 2),
                 "per_call_s": round(gate_s / len(gated), 3) if gated else None},
        "marts_build_s": report.seconds,
        "marts_mb": round(marts.stat().st_size / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a new or empty directory")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--flags-per-call", type=int, default=10)
    parser.add_argument("--verdicts", type=int, default=300)
    parser.add_argument("--gate-sample", type=int, default=20, help="calls left for the quality gate to check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    if not (args.calls >= 1 and args.flags_per_call >= 1 and 0 <= args.gate_sample <= args.calls):
        parser.error("--calls and --flags-per-call must be at least 1, --gate-sample 0 to --calls")
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out {out}: not empty (the calls and verdicts would mix with the old ones)")
    json.dump(build(load_settings(), out, args), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
