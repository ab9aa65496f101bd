"""Fetch real two-speaker telephone calls with references, from package registries only.

Two excerpts of real (not synthetic) telephone conversations ship inside ordinary packages:

* ``pyannote_sample``: the 30 s sample in the ``pyannote.audio`` wheel (PyPI, MIT), two US
  callers on a telephone line (band-limited to 4 kHz, stored as 16 kHz mono), with the
  package's own RTTM (speaker turns) and STM (transcript).
* ``callfriend_know``: the 24 s CALLFRIEND excerpt in Debian's ``transcriber`` package
  (GPL-2+), 8 kHz mu-law, one speaker per channel, with a hand transcription (.trs) by the LDC.

Writes into ``data/real_call/`` (git-ignored): ``<name>.wav`` (mono, what a call recording
looks like), ``<name>.rttm`` and ``<name>.stm``; for the CALLFRIEND call also
``callfriend_know.stereo.wav`` (the two sides). See bench/real_call/README.md.

Usage: python bench/fetch_real_call.py [--out data/real_call]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PYANNOTE_REQ = "pyannote.audio==4.0.7"
PYANNOTE_DIR = "pyannote/audio/sample/"
DEBIAN_PKG = "transcriber"
DEBIAN_EXAMPLES = "./usr/share/doc/transcriber/examples/"

# Content hashes of the shipped files: a new package version with other audio must fail loudly,
# not silently change the benchmark.
SHA256 = {
    "sample.wav": "c319b4abca767b124e41432d364fd7df006cb26bb79d09326c487d606a134e6e",
    "know.sph": "d8890112bc0cf56c7d68f1210e2a8f67a4c14f49b8ec0cfa8580c5da6d5d09ba",
}


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float
    text: str


def _check(name: str, data: bytes) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != SHA256[name]:
        raise SystemExit(f"{name}: sha256 {got} differs from the pinned {SHA256[name]}")


def _write_rttm(path: Path, uri: str, turns: list[Turn]) -> None:
    lines = [
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>"
        for t in turns
    ]
    path.write_text("\n".join(lines) + "\n")


def _write_stm(path: Path, uri: str, turns: list[Turn]) -> None:
    lines = [f"{uri} 1 {t.speaker} {t.start:.3f} {t.end:.3f} {t.text}" for t in turns]
    path.write_text("\n".join(lines) + "\n")


def _read_rttm(text: str) -> list[Turn]:
    turns = []
    for line in text.splitlines():
        f = line.split()
        turns.append(Turn(f[7], float(f[3]), float(f[3]) + float(f[4]), ""))
    return turns


def _read_stm(text: str) -> list[Turn]:
    turns = []
    for line in text.splitlines():
        _, _, spk, start, end, *words = line.split()
        turns.append(Turn(spk, float(start), float(end), " ".join(words)))
    return turns


def fetch_pyannote_sample(out: Path, work: Path) -> None:
    """The pyannote.audio sample: wheel from PyPI, files read straight from the zip."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "-d", str(work), PYANNOTE_REQ],
        check=True,
    )
    wheel = next(work.glob("pyannote_audio-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        wav = z.read(PYANNOTE_DIR + "sample.wav")
        rttm = z.read(PYANNOTE_DIR + "sample.rttm").decode()
        stm = z.read(PYANNOTE_DIR + "sample.stm").decode()
    _check("sample.wav", wav)
    uri = "pyannote_sample"
    (out / f"{uri}.wav").write_bytes(wav)
    # Re-keyed to our file name; speaker labels kept as shipped (RTTM speaker90 = STM Diane,
    # speaker91 = Sheila): DER and WER do not depend on label names.
    _write_rttm(out / f"{uri}.rttm", uri, _read_rttm(rttm))
    _write_stm(out / f"{uri}.stm", uri, _read_stm(stm))


def _read_trs(xml: bytes) -> list[Turn]:
    """Transcriber turns -> one Turn per speaker per turn; <Who nb=k> splits overlapped turns."""
    turns = []
    for turn in ET.fromstring(xml).iter("Turn"):
        speakers = (turn.get("speaker") or "").split()
        if not speakers:
            continue
        start, end = float(turn.get("startTime")), float(turn.get("endTime"))
        texts = [""] * len(speakers)
        k = 0
        for node in turn.iter():
            if node.tag == "Who":
                k = int(node.get("nb")) - 1
            if node.tail:
                texts[k] += " " + node.tail
        for spk, text in zip(speakers, texts):
            words = _clean_trs_text(text)
            if words:  # a turn of only {laugh} or {inhale} is not speech
                turns.append(Turn(spk, start, end, words))
    return turns


def _clean_trs_text(text: str) -> str:
    text = re.sub(r"\{[^}]*\}", " ", text)  # {laugh} {inhale}: non-speech events
    text = text.replace("((", "").replace("))", "")  # (( )) marks uncertain words: keep them
    return " ".join(text.replace('"', " ").split())


def _channel_activity(x: np.ndarray, sr: int, frame: float = 0.02) -> np.ndarray:
    """Per-frame speech flag of one channel: energy within 30 dB of its loud frames."""
    n = int(sr * frame)
    frames = x[: len(x) // n * n].reshape(-1, n).astype(np.float64)
    db = 10 * np.log10((frames**2).mean(1) + 1e-9)
    active = db > np.percentile(db, 95) - 30
    # Close pauses under 0.3 s so one utterance is one segment, as annotators mark it.
    gap = int(0.3 / frame)
    idx = np.flatnonzero(active)
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a <= gap:
            active[a:b] = True
    return active


def _trim_to_channel(turns: list[Turn], pcm: np.ndarray, sr: int, channel: dict[str, int]) -> list[Turn]:
    """Speaker turns cut to when that speaker's own channel has speech.

    The .trs marks overlapped stretches as one turn for both speakers ("I know." inside a
    3.7 s turn of the other); each side of this call is on its own channel, so the channel's
    energy says when within the turn that speaker actually talks.
    """
    frame = 0.02
    out = []
    for t in turns:
        active = _channel_activity(pcm[:, channel[t.speaker]], sr, frame)
        a, b = int(round(t.start / frame)), int(round(t.end / frame))
        idx = np.flatnonzero(active[a:b]) + a
        if len(idx):
            out.append(Turn(t.speaker, idx[0] * frame, (idx[-1] + 1) * frame, t.text))
    return out


def _write_wav(path: Path, pcm: np.ndarray, sr: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.astype("<i2").tobytes())


def fetch_callfriend_know(out: Path, work: Path) -> None:
    """The CALLFRIEND excerpt in Debian's transcriber package: .deb via apt, files from its tar."""
    # As root into a private temp dir: apt's _apt sandbox user could not write there.
    subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", DEBIAN_PKG],
                   cwd=work, check=True, stdout=subprocess.DEVNULL)
    deb = next(work.glob(f"{DEBIAN_PKG}_*.deb"))
    tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                               capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        sph = gzip.decompress(tar.extractfile(DEBIAN_EXAMPLES + "know.sph.gz").read())
        trs = tar.extractfile(DEBIAN_EXAMPLES + "know.trs").read()
    _check("know.sph", sph)
    (work / "know.sph").write_bytes(sph)
    # NIST SPHERE, 2 channels of 8 kHz mu-law: FFmpeg decodes it.
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(work / "know.sph"), "-f", "s16le", "-c:a", "pcm_s16le", "-"],
        check=True, capture_output=True,
    ).stdout
    sr = 8000
    pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, 2)
    uri = "callfriend_know"
    _write_wav(out / f"{uri}.stereo.wav", pcm, sr)
    _write_wav(out / f"{uri}.wav", pcm.astype(np.int32).sum(1, keepdims=True) // 2, sr)
    turns = _read_trs(trs)
    _write_stm(out / f"{uri}.stm", uri, turns)
    # Measured on this file: spk2 is channel A (0), spk1 is channel B (1).
    _write_rttm(out / f"{uri}.rttm", uri, _trim_to_channel(turns, pcm, sr, {"spk2": 0, "spk1": 1}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/real_call"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for fetch in (fetch_pyannote_sample, fetch_callfriend_know):
        with tempfile.TemporaryDirectory() as tmp:
            fetch(args.out, Path(tmp))
    for path in sorted(args.out.iterdir()):
        print(path)


if __name__ == "__main__":
    if shutil.which("ffmpeg") is None or shutil.which("apt-get") is None:
        raise SystemExit("needs ffmpeg and apt-get (Debian)")
    main()
