"""Inputs the pipeline must quarantine: empty, truncated, not media at all, silent."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.devtools.synth.voices import SPEECH_RATE


def write_bad_inputs(out_dir: Path) -> dict[str, Path]:
    """Inputs the pipeline must quarantine, keyed by file name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("empty.wav", "truncated.wav", "not_media.mp3", "silent.wav")}
    paths["empty.wav"].write_bytes(b"")
    # A real 5 s WAV cut after 300 bytes: the header still claims 160,000 bytes of data.
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(5 * SPEECH_RATE) / SPEECH_RATE)
    buf = io.BytesIO()
    sf.write(buf, tone, SPEECH_RATE, subtype="PCM_16", format="WAV")
    paths["truncated.wav"].write_bytes(buf.getvalue()[:300])
    paths["not_media.mp3"].write_bytes(b"This is not an audio file, just text with an mp3 name.\n" * 20)
    sf.write(paths["silent.wav"], np.zeros(10 * SPEECH_RATE, dtype=np.int16), SPEECH_RATE, subtype="PCM_16")
    return paths
