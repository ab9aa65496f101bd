"""Quality of the embedded profile: DER (collar 0.25, pyannote.metrics) and WER on real
telephone calls (fetched from packages by bench/fetch_real_call.py) and on generated calls
with telephone band and noise. Prints JSON.

    .venv/bin/python bench/eval_quality.py [--synthetic 6] [--out data/eval]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent


def _score(name, audio, ref_rttm, ref_stm, n_ref_speakers, settings, out: Path, metadata=None) -> dict:
    from pipeline.analyze import analyze_call
    from pipeline.evaluation import der_from_files, wer_from_files
    from pipeline.outputs import write_local

    result = analyze_call(audio, name, settings=settings, metadata=metadata)
    write_local(result, out / name)
    if not result.ok:
        return {"call": name, "status": result.manifest.status, "reason": result.manifest.reason}
    der = der_from_files(ref_rttm, out / name / "diarization.rttm", collar=0.25)
    return {
        "call": name,
        "audio_s": result.manifest.duration_s,
        "der": round(der["der"], 4),
        "confusion_s": round(der["confusion"], 2),
        "missed_s": round(der["missed_detection"], 2),
        "false_alarm_s": round(der["false_alarm"], 2),
        "wer": round(wer_from_files(ref_stm, out / name / "transcript.vtt"), 4),
        "speakers_ref": n_ref_speakers,
        "speakers_hyp": result.manifest.tables and len({r["speaker"] for r in result.tables["speaker_turns"].to_pylist()}),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--synthetic", type=int, default=6, help="generated calls per condition")
    parser.add_argument("--out", default="data/eval")
    args = parser.parse_args()

    from pipeline.settings import load_settings
    from pipeline.synth import generate_call

    settings = load_settings()
    out = Path(args.out)
    real_dir = Path("data/real_call")
    if not (real_dir / "pyannote_sample.wav").exists():
        subprocess.run([sys.executable, str(HERE / "fetch_real_call.py"), "--out", str(real_dir)], check=True)

    report: dict = {"real": [], "synthetic": {}}
    for name in ("pyannote_sample", "callfriend_know"):
        report["real"].append(
            _score(name, real_dir / f"{name}.wav", real_dir / f"{name}.rttm", real_dir / f"{name}.stm", 2, settings, out)
        )
    conditions = {
        "2spk_tel_20dB": dict(n_speakers=2, snr_db=20.0),
        "2spk_tel_10dB": dict(n_speakers=2, snr_db=10.0),
        "3spk_tel_10dB": dict(n_speakers=3, snr_db=10.0),
    }
    for label, kwargs in conditions.items():
        rows = []
        for i in range(args.synthetic):
            call = generate_call(out / "media", f"{label}-{i}", seed=100 + i, telephone=True, **kwargs)
            rows.append(_score(call.call_id, call.audio_path, call.rttm_path, call.stm_path, call.n_speakers, settings, out))
        ok = [r for r in rows if "der" in r]
        report["synthetic"][label] = {
            "calls": rows,
            "mean_der": round(sum(r["der"] for r in ok) / len(ok), 4) if ok else None,
            "mean_wer": round(sum(r["wer"] for r in ok) / len(ok), 4) if ok else None,
            "speaker_count_right": f"{sum(r['speakers_hyp'] == r['speakers_ref'] for r in ok)}/{len(ok)}",
        }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
