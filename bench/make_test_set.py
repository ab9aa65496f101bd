"""Write the generated test set with its truth, and a manifest listing every call's condition.

    .venv/bin/python bench/make_test_set.py [--out data/testset] [--per-condition 1] [--seed 0]
                                            [--long-minutes 30] [--long-stereo] [--no-customer-levels]

Writes ``OUT/media/<call_id>.wav`` and ``.json`` (what the pipeline reads), ``OUT/truth/``
(``.rttm``, ``.stm``, ``.pii.json``) and ``OUT/manifest.json``:
``{"seed", "per_condition", "calls": [{call_id, condition, audio, rttm, stm, metadata, pii,
n_speakers, telephone, snr_db, stereo, overlap, frustrated, duration_s, sample_rate, scenario,
voices, planted, customer_gain_db}, ...], "long_calls": [...]}``. The conditions are 2/3/4
speakers x telephone x SNR 20/10 dB x mono/stereo, with overlaps and planted identifiers spread
over them, and two-speaker stereo 8 kHz calls with the customer 0, 5 and 10 dB quieter than the
agent at SNR 20/10 dB (``2spk-tel-20db-stereo-cust-5db``; 18 conditions in all,
`pipeline.devtools.synth.call_sets.generate_test_set`; ``--no-customer-levels`` leaves those out).
``--long-minutes`` adds one long call (for memory and real-time-factor runs). Prints the
manifest's path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/testset")
    parser.add_argument("--per-condition", type=int, default=1, help="calls per condition (18 conditions)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-minutes", type=float, default=0.0, help="also write a long call this long (0: none)")
    parser.add_argument("--long-stereo", action="store_true", help="the long call in stereo")
    parser.add_argument("--no-customer-levels", action="store_true",
                        help="leave out the stereo calls with the customer 0/5/10 dB quieter than the agent")
    args = parser.parse_args()

    from pipeline.devtools.synth.call_sets import TEST_SET_CUSTOMER_GAINS_DB, generate_test_set
    from pipeline.devtools.synth.long_call import generate_long_call

    out = Path(args.out)
    started = time.perf_counter()
    calls = generate_test_set(out / "media", seed=args.seed, per_condition=args.per_condition, truth_dir=out / "truth",
                              customer_gains_db=() if args.no_customer_levels else TEST_SET_CUSTOMER_GAINS_DB)
    long_calls = []
    if args.long_minutes > 0:
        name = f"long-{args.long_minutes:g}min-{'stereo' if args.long_stereo else 'mono'}"
        long_calls.append(generate_long_call(out / "media", name, minutes=args.long_minutes, seed=args.seed,
                                             stereo=args.long_stereo, pii=True, truth_dir=out / "truth"))
    manifest = {
        "seed": args.seed,
        "per_condition": args.per_condition,
        "calls": [c.describe() for c in calls],
        "long_calls": [c.describe() for c in long_calls],
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    audio_min = sum(c.duration_s for c in calls + long_calls) / 60
    print(f"{len(calls)} calls + {len(long_calls)} long, {audio_min:.1f} min of audio, "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
