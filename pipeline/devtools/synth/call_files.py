"""What a synthetic call leaves on disk: the audio, its truth (RTTM, STM, planted identifiers)
and the metadata JSON the pipeline reads."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
from pyannote.core import Annotation, Segment

from pipeline.call.exports import to_rttm
from pipeline.devtools.synth.dialogue import Turn
from pipeline.devtools.synth.identifiers import PlantedIdentifier

FORMATS = ("wav", "flac", "mp3", "m4a")


def write_audio(mix: np.ndarray, rate: int, path: Path, fmt: str, mulaw: bool) -> None:
    """WAV directly (μ-law coded when asked); other containers via ffmpeg from that WAV."""
    subtype = "ULAW" if mulaw else "PCM_16"
    if fmt == "wav":
        sf.write(path, mix, rate, subtype=subtype, format="WAV")
        return
    codec = {"flac": ["-c:a", "flac"],
             "mp3": ["-c:a", "libmp3lame", "-b:a", "32k" if rate <= 8000 else "64k"],
             "m4a": ["-c:a", "aac", "-b:a", "24k" if rate <= 8000 else "48k"]}[fmt]
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        wav = Path(tmp) / "mix.wav"
        sf.write(wav, mix, rate, subtype=subtype, format="WAV")
        subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav),
             "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", *codec,
             str(path)],
            check=True, capture_output=True,
        )


def _annotation(turns: list[Turn]) -> Annotation:
    annotation = Annotation()
    for t in turns:
        annotation[Segment(t.start, t.end)] = t.speaker
    return annotation


def _stm(call_id: str, turns: list[Turn]) -> str:
    return "".join(f"{call_id} 1 {t.speaker} {t.start:.3f} {t.end:.3f} {t.text}\n" for t in turns)


def write_pii(call_id: str, identifiers: list[PlantedIdentifier], truth_dir: Path) -> Path:
    path = truth_dir / f"{call_id}.pii.json"
    path.write_text(json.dumps({"call_id": call_id, "identifiers": [asdict(i) for i in identifiers]},
                               indent=2) + "\n")
    return path


def write_truth(call_id: str, turns: list[Turn], truth_dir: Path) -> tuple[Path, Path]:
    """``<call_id>.rttm`` (who spoke when, by role) and ``<call_id>.stm`` (what was said) in truth_dir."""
    rttm_path = truth_dir / f"{call_id}.rttm"
    rttm_path.write_text(to_rttm(_annotation(turns), call_id))
    stm_path = truth_dir / f"{call_id}.stm"
    stm_path.write_text(_stm(call_id, turns))
    return rttm_path, stm_path


def write_metadata(out_dir: Path, call_id: str, channel_roles: dict[str, str] | None) -> Path:
    metadata = {
        "call_id": call_id,
        # Roles are not given: the pipeline must infer them (the truth is in the RTTM labels).
        "consent": {"voice_affect": True, "text_affect": True, "video": False},
    }
    if channel_roles is not None:  # what a recorder that knows its legs would say
        metadata["channels"] = channel_roles
    path = out_dir / f"{call_id}.json"
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    return path
