"""What the inference policy costs and guarantees on the generated test set (issue 11).

For each call of the test set (bench/make_test_set.py's grid: 2/3/4 speakers x SNR 20/10 dB x
mono/stereo, one call each; or --test-set's manifest) with the default settings:

- the affect rows about anyone but a customer (must be 0), in speaker_affect, face_affect,
  coaching_affect and utterances.text_valence;
- audit completeness as the quality gate measures it (affect values with the audit row of a
  performed inference);
- the policy rules that decided, and the calls where roles were too uncertain to read anyone;
- customer-frustration flags and whether the frustrated span was found; for calls where the
  ``role-uncertain`` rule withheld everything, the same with ``policy.min_role_confidence = 0``
  (what the rule costs in flags).

Prints JSON.

    .venv/bin/python bench/policy_effect.py [--out data/eval/policy_effect.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from pipeline.call.analyze import analyze_call
from pipeline.devtools.synth.call_sets import generate_test_set
from pipeline.jobs.quality_gate import gate_call_tables
from pipeline.settings import PolicySettings, Settings


def _found(flags: list[dict], span) -> bool:
    return span is not None and any(f["start_s"] < span[1] and f["end_s"] > span[0] for f in flags)


def _score(call, settings: Settings) -> dict:
    metadata = json.loads(call.metadata_path.read_text())
    result = analyze_call(call.audio_path, call.call_id, settings=settings, metadata=metadata)
    t = result.tables
    non_customer = sum(1 for name in ("speaker_affect", "face_affect", "coaching_affect")
                       for r in t[name].to_pylist() if r["role"] != "customer")
    non_customer += sum(1 for u in t["utterances"].to_pylist() if u["role"] != "customer" and u["text_valence"] is not None)
    gate = gate_call_tables(t)
    flags = t["qa_flags"].to_pylist()
    rules = Counter(a["policy_rule"] for a in t["audit"].to_pylist()
                    if a["inference"] in ("text_valence", "voice_arousal", "face_expression"))
    return {"non_customer_affect_rows": non_customer, "affect_values": gate.affect_values,
            "affect_values_audited": gate.affect_values_audited, "gate_passed": gate.passed, "rules": dict(rules),
            "flags": len(flags), "span_found": _found(flags, call.frustrated_span)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = Settings()
    unprotected = dataclasses.replace(settings, policy=PolicySettings(min_role_confidence=0.0))
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for call in generate_test_set(Path(tmp)):
            row = {"call_id": call.call_id, "frustrated": call.frustrated_span is not None, **_score(call, settings)}
            if row["rules"].get("role-uncertain"):
                without = _score(call, unprotected)
                row["without_role_uncertain_rule"] = {"flags": without["flags"], "span_found": without["span_found"]}
            rows.append(row)
    frustrated = [r for r in rows if r["frustrated"]]
    uncertain = [r for r in rows if "without_role_uncertain_rule" in r]
    summary = {
        "calls": len(rows),
        "non_customer_affect_rows": sum(r["non_customer_affect_rows"] for r in rows),
        "affect_values": sum(r["affect_values"] for r in rows),
        "affect_values_audited": sum(r["affect_values_audited"] for r in rows),
        "gate_passed": sum(r["gate_passed"] for r in rows),
        "calls_role_uncertain": len(uncertain),
        "flags": sum(r["flags"] for r in rows),
        "frustrated_calls": len(frustrated),
        "frustrated_spans_found": sum(r["span_found"] for r in frustrated),
        "frustrated_spans_found_without_role_uncertain_rule": sum(
            r.get("without_role_uncertain_rule", r)["span_found"] for r in frustrated),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    summary["audit_completeness"] = (summary["affect_values_audited"] / summary["affect_values"]
                                     if summary["affect_values"] else None)
    out = {"summary": summary, "calls": rows}
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
