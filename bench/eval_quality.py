"""Quality of the pipeline against a known truth: real telephone calls and the generated test set.

Runs `analyze_call` + `write_local` on each call and scores what it wrote:

- DER (pyannote.metrics, collar 0.25 total width) and WER (after `normalize_text`); on calls with
  planted identifiers also WER outside the turns that read them out (a redaction placeholder
  is not a recognition error);
- speaker count right (distinct speakers in ``speaker_turns`` = truth);
- roles right (synthetic calls): each hypothesis speaker maps to the truth speaker it overlaps
  most; right when the ones mapped to the truth agent all have role ``agent`` in
  ``speaker_turns`` and the ones mapped to the customer all have ``customer``
  (`pipeline.devtools.evaluation.roles_right`);
- leaks: any planted identifier (``<call_id>.pii.json``) still in ``transcript.vtt``, in any text
  column of ``tables/utterances.parquet`` or in ``qa_flags.evidence`` (`find_leaks`);
- per-role WER (synthetic calls): the truth's agent (customer) lines against the cues that
  ``transcript.vtt`` tags ``(agent)`` (``(customer)``), outside planted identifiers, so a word
  given to the wrong party counts against both; ``wer_agent``, ``wer_customer``;
- on stereo synthetic calls, the customer's baseline: Whisper run plainly on the customer's
  channel alone (the pipeline's faster-whisper model, its default ``transcribe``, no VAD),
  ``wer_customer_plain_whisper``, and whether the pipeline is no worse (``customer_no_worse``).

Reported per call, per condition (e.g. ``3spk-tel-10db-stereo``, ``2spk-tel-20db-stereo-cust-10db``)
and per factor (speakers, SNR, channels, overlap, customer level). Prints JSON and writes it to
OUT/quality.json.

    .venv/bin/python bench/eval_quality.py [--synthetic 1] [--test-set data/testset/manifest.json]
        [--only 3spk --only 4spk] [--channel-map] [--no-real] [--no-customer-levels] [--out data/eval]

``--synthetic N`` generates N calls per condition (18 conditions: the 12 of the test set and the
6 stereo ones with the customer 0/5/10 dB quieter at SNR 20/10 dB, which ``--no-customer-levels``
leaves out; about 10 s of analysis per call on 2 cores); ``--test-set`` scores a set written by
bench/make_test_set.py instead.
``--channel-map`` gives stereo calls their channel map in the metadata (by default the
pipeline has to infer which channel is the agent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent
REAL_CALLS = ("pyannote_sample", "callfriend_know", "callfriend_know.stereo")
CHANNEL_MAP = {"0": "agent", "1": "customer"}


def _texts(run: Path) -> list[tuple[str, str]]:
    """(source, text) for every piece of output text a transcript identifier could survive in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.devtools.evaluation import read_vtt_cues

    texts = [("transcript.vtt", c.text) for c in read_vtt_cues(run / "transcript.vtt")]
    utterances = pq.read_table(run / "tables" / "utterances.parquet")
    for name in utterances.column_names:
        if pa.types.is_string(utterances.schema.field(name).type):
            texts += [(f"utterances.{name}", v) for v in utterances.column(name).to_pylist() if v]
    flags = run / "tables" / "qa_flags.parquet"
    if flags.exists():
        texts += [("qa_flags.evidence", v) for v in pq.read_table(flags).column("evidence").to_pylist() if v]
    return texts


def _hypothesis_speakers(run: Path):
    """speaker_turns as an Annotation, and each speaker's role."""
    import pyarrow.parquet as pq
    from pyannote.core import Annotation, Segment

    rows = pq.read_table(run / "tables" / "speaker_turns.parquet").to_pylist()
    annotation = Annotation()
    for r in rows:
        annotation[Segment(r["start_s"], r["end_s"]), len(annotation)] = r["speaker"]
    return annotation, {r["speaker"]: r["role"] for r in rows}


def _outside(start: float, end: float, spans) -> bool:
    return not any(start < b and a < end for a, b in spans)


def role_wer(stm: Path | str, vtt: Path | str, role: str, exclude=()):
    """Word errors (`WerScore`) of one party: the STM lines of speaker ``role`` against the
    cues whose voice tag carries ``(role)``, e.g. ``<v SPEAKER_01 (customer)>``. ``exclude``:
    (start, end) spans left out on both sides, as in `wer_counts_from_files`."""
    from pipeline.devtools.evaluation import load_stm, read_vtt_cues, stm_text, word_error_counts

    entries = [e for e in load_stm(stm) if e.speaker == role and _outside(e.start, e.end, exclude)]
    cues = [c for c in read_vtt_cues(vtt) if c.text and c.voice and c.voice.endswith(f"({role})")
            and _outside((c.start + c.end) / 2, (c.start + c.end) / 2 + 1e-6, exclude)]
    return word_error_counts(stm_text(entries), " ".join(c.text for c in cues), role)


def plain_whisper_wer(audio: Path | str, stm: Path | str, channel: int, role: str, settings, exclude=()):
    """Word errors of Whisper run plainly on one channel: the model the pipeline's faster-whisper
    backend loads, its default ``transcribe`` (30 s seek, timestamps, no VAD filter), against
    the STM lines of ``role`` (``exclude`` as in `role_wer`, on segment midpoints). Redacted as
    the pipeline's transcripts are, so the two differ by transcription alone."""
    from pipeline.devtools.evaluation import load_stm, stm_text, word_error_counts
    from pipeline.storage.media import decode_audio
    from pipeline.stages.audio import transcription
    from pipeline.stages.text.redaction import redact_text

    t = settings.transcription
    path = transcription.local_model_path(dataclasses.replace(t, backend="faster-whisper"))
    model = transcription._faster_whisper_model(str(path), t.device, t.compute_type, t.cpu_threads)
    decoded = decode_audio(audio, sample_rate=transcription.SAMPLE_RATE)
    segments, _ = model.transcribe(decoded.channels[channel], language=t.language)
    hypothesis = " ".join(seg.text for seg in segments if _outside((seg.start + seg.end) / 2, (seg.start + seg.end) / 2 + 1e-6, exclude))
    hypothesis, _ = redact_text(hypothesis, settings.redaction)
    entries = [e for e in load_stm(stm) if e.speaker == role and _outside(e.start, e.end, exclude)]
    return word_error_counts(stm_text(entries), hypothesis, f"{role} (plain Whisper)")


def score_call(case: dict, settings, out: Path, channel_map: bool) -> dict:
    from pipeline.call.analyze import analyze_call
    from pipeline.devtools.evaluation import der_from_files, find_leaks, load_rttm, roles_right, wer_from_files
    from pipeline.call.exports import write_local

    call_id = case["call_id"]
    metadata = json.loads(Path(case["metadata"]).read_text()) if case.get("metadata") else {}
    if channel_map and case.get("stereo"):
        metadata["channels"] = CHANNEL_MAP
    started = time.perf_counter()
    result = analyze_call(Path(case["audio"]), call_id, settings=settings, metadata=metadata)
    seconds = time.perf_counter() - started
    run = out / "runs" / call_id
    write_local(result, run)
    row = {"call": call_id, "condition": case.get("condition", "real"), "status": result.manifest.status}
    if not result.ok:
        return {**row, "reason": result.manifest.reason}
    der = der_from_files(case["rttm"], run / "diarization.rttm", collar=0.25)
    hypothesis, roles = _hypothesis_speakers(run)
    row.update({
        "audio_s": result.manifest.duration_s,
        "analysis_s": round(seconds, 2),
        "rtf": round(seconds / result.manifest.duration_s, 4),
        "der": round(der["der"], 4),
        "confusion_s": round(der["confusion"], 2),
        "missed_s": round(der["missed_detection"], 2),
        "false_alarm_s": round(der["false_alarm"], 2),
        "wer": round(wer_from_files(case["stm"], run / "transcript.vtt"), 4),
        "speakers_ref": case["n_speakers"],
        "speakers_hyp": len(roles),
        "roles": roles,
    })
    row["speakers_right"] = row["speakers_hyp"] == row["speakers_ref"]
    if case.get("synthetic"):
        reference = load_rttm(case["rttm"])[call_id]
        row["roles_right"] = roles_right(reference, hypothesis, roles)
    spans = []
    if case.get("pii"):
        planted = json.loads(Path(case["pii"]).read_text())["identifiers"]
        spans = [(p["start"], p["end"]) for p in planted]
        row["wer_outside_pii"] = round(wer_from_files(case["stm"], run / "transcript.vtt", exclude=spans), 4)
        row["planted"] = [p["kind"] for p in planted]
        row["leaks"] = [{"kind": leak.kind, "source": leak.source, "text": leak.text}
                        for leak in find_leaks(_texts(run), planted)]
    if case.get("synthetic"):
        for role in CHANNEL_MAP.values():
            score = role_wer(case["stm"], run / "transcript.vtt", role, exclude=spans)
            row[f"wer_{role}"] = round(score.wer, 4)
            row[f"words_{role}"] = {"ref": score.ref_words, "sub": score.substitutions, "del": score.deletions,
                                    "ins": score.insertions}
        if case.get("stereo"):
            customer_channel = next(int(c) for c, r in CHANNEL_MAP.items() if r == "customer")
            plain = plain_whisper_wer(case["audio"], case["stm"], customer_channel, "customer", settings, exclude=spans)
            row["wer_customer_plain_whisper"] = round(plain.wer, 4)
            row["customer_no_worse"] = row["wer_customer"] <= row["wer_customer_plain_whisper"]
    if case.get("customer_gain_db") is not None:
        row["customer_gain_db"] = case["customer_gain_db"]
    return row


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def _rate(flags) -> str | None:
    flags = [f for f in flags if f is not None]
    return f"{sum(flags)}/{len(flags)}" if flags else None


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    pii = [r for r in ok if "planted" in r]
    return {
        "calls": len(rows),
        "ok": len(ok),
        "mean_der": _mean(r["der"] for r in ok),
        "mean_wer": _mean(r["wer"] for r in ok),
        "mean_wer_outside_pii": _mean(r.get("wer_outside_pii", r["wer"]) for r in ok),
        "speaker_count_right": _rate(r["speakers_right"] for r in ok),
        "roles_right": _rate(r.get("roles_right") for r in ok),
        "pii_calls_leaking": _rate(bool(r["leaks"]) for r in pii),
        "leaked_identifiers": sum(len({leak["kind"] for leak in r["leaks"]}) for r in pii),
        "planted_identifiers": sum(len(r["planted"]) for r in pii),
        "mean_rtf": _mean(r["rtf"] for r in ok),
        "mean_wer_agent": _mean(r.get("wer_agent") for r in ok),
        "mean_wer_customer": _mean(r.get("wer_customer") for r in ok),
        "mean_wer_customer_plain_whisper": _mean(r.get("wer_customer_plain_whisper") for r in ok),
        "customer_no_worse_than_plain_whisper": _rate(r.get("customer_no_worse") for r in ok),
    }


def _factors(case: dict) -> list[str]:
    factors = [f"speakers={case['n_speakers']}", f"snr={case['snr_db']:g}dB",
               f"channels={'stereo' if case['stereo'] else 'mono'}", f"overlap={'yes' if case['overlap'] else 'no'}"]
    if case.get("customer_gain_db") is not None:
        factors.append(f"customer_level={case['customer_gain_db']:g}dB")
    return factors


def _real_cases(real_dir: Path) -> list[dict]:
    if not (real_dir / "pyannote_sample.wav").exists():
        subprocess.run([sys.executable, str(HERE / "fetch_real_call.py"), "--out", str(real_dir)], check=True)
    return [{"call_id": name, "audio": real_dir / f"{name}.wav", "rttm": real_dir / f"{name}.rttm",
             "stm": real_dir / f"{name}.stm", "n_speakers": 2, "stereo": name.endswith(".stereo")}
            for name in REAL_CALLS if (real_dir / f"{name}.wav").exists()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=1, help="generated calls per condition (18 conditions)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-set", help="manifest.json from bench/make_test_set.py (instead of generating)")
    parser.add_argument("--only", action="append", default=[], help="score only calls whose id contains this")
    parser.add_argument("--channel-map", action="store_true", help="give stereo calls their channel map")
    parser.add_argument("--no-real", action="store_true", help="skip the real calls")
    parser.add_argument("--no-customer-levels", action="store_true",
                        help="generate no stereo calls with the customer 0/5/10 dB quieter than the agent")
    parser.add_argument("--out", default="data/eval")
    args = parser.parse_args()

    from pipeline.settings import load_settings
    from pipeline.devtools.synth.call_sets import TEST_SET_CUSTOMER_GAINS_DB, generate_test_set

    settings = load_settings()
    out = Path(args.out)
    started = time.perf_counter()
    report: dict = {"real": None, "synthetic": None}
    if not args.no_real:
        real = [score_call(case, settings, out, args.channel_map) for case in _real_cases(Path("data/real_call"))]
        report["real"] = {"calls": real, "all": summarise(real)}

    if args.test_set:
        cases = json.loads(Path(args.test_set).read_text())["calls"]
    else:
        root = out / "testset"
        gains = () if args.no_customer_levels else TEST_SET_CUSTOMER_GAINS_DB
        cases = [c.describe() for c in generate_test_set(root / "media", seed=args.seed, per_condition=args.synthetic,
                                                         truth_dir=root / "truth", customer_gains_db=gains)]
    cases = [{**c, "synthetic": True} for c in cases if not args.only or any(s in c["call_id"] for s in args.only)]
    rows = []
    for case in cases:
        rows.append(score_call(case, settings, out, args.channel_map))
        print(f"{case['call_id']}: " + ", ".join(f"{k} {rows[-1][k]}" for k in (
            "der", "wer", "speakers_hyp", "wer_agent", "wer_customer", "wer_customer_plain_whisper") if k in rows[-1]),
            file=sys.stderr, flush=True)
    by_condition: dict[str, list[dict]] = {}
    by_factor: dict[str, list[dict]] = {}
    for case, row in zip(cases, rows):
        by_condition.setdefault(case["condition"], []).append(row)
        for factor in _factors(case):
            by_factor.setdefault(factor, []).append(row)
    report["synthetic"] = {
        "conditions": {name: summarise(group) for name, group in by_condition.items()},
        "factors": {name: summarise(group) for name, group in sorted(by_factor.items())},
        "all": summarise(rows) if rows else None,
        "calls": rows,
    }
    report["channel_map_given"] = args.channel_map
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
