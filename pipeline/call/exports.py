"""One call's result and its exports: RTTM, WebVTT and the local directory of `analyze --out`.

Files are 0640: transcripts, scores and review snippets are personal data, readable by the owner
and the group that the directory grants, never by everyone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from pyannote.core import Annotation

from pipeline.manifest import CallManifest
from pipeline.records import Utterance
from pipeline.storage.curated import parquet_bytes

FILE_MODE = 0o640


@dataclass
class CallResult:
    manifest: CallManifest
    tables: dict[str, pa.Table] = field(default_factory=dict)  # empty when quarantined
    rttm: str = ""
    vtt: str = ""
    snippets: dict[str, bytes] = field(default_factory=dict)  # flag id -> Ogg/Opus review audio

    @property
    def ok(self) -> bool:
        return self.manifest.status == "ok"


def to_rttm(turns: Annotation, uri: str) -> str:
    """RTTM text of ``turns`` under ``uri``, whatever the annotation's own uri (left as it is).

    pyannote.core's writer: one ``SPEAKER <uri> 1 <start> <duration> <NA> <NA> <label> <NA> <NA>``
    line per turn, in time order; the pipeline's diarization.rttm and the synthetic truth alike.
    """
    named = turns.copy()
    named.uri = uri
    return named.to_rttm()


def _vtt_timestamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def to_webvtt(utterances: list[Utterance], role_of: dict[str, str]) -> str:
    """WebVTT, a cue per utterance, voiced by speaker and role: ``<v SPEAKER_00 (agent)>``."""
    cues = ["WEBVTT", ""]
    for u in utterances:
        role = role_of.get(u.speaker)
        voice = f"{u.speaker} ({role})" if role else u.speaker
        timing = f"{_vtt_timestamp(u.start)} --> {_vtt_timestamp(u.end)}"
        cues += [str(u.utterance_id + 1), timing, f"<v {voice}>{u.text}", ""]
    return "\n".join(cues)


def write_local(result: CallResult, out_dir: str | Path) -> Path:
    """The result under ``out_dir``: RTTM, WebVTT, ``tables/<table>.parquet``,
    ``snippets/<flag_id>.ogg`` and, last, ``manifest.json``. Snippets of an earlier run into the
    same directory whose flags this run has not are removed (audio is personal data)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if result.ok:
        _write_file(out / "diarization.rttm", result.rttm.encode())
        _write_file(out / "transcript.vtt", result.vtt.encode())
        if result.tables:
            (out / "tables").mkdir(exist_ok=True)
        for name, table in result.tables.items():
            _write_file(out / "tables" / f"{name}.parquet", parquet_bytes(table))
            result.manifest.table_keys[name] = f"tables/{name}.parquet"
    _write_snippets(out / "snippets", result.snippets)
    manifest_path = out / "manifest.json"
    _write_file(manifest_path, result.manifest.to_json().encode())  # written last: it commits the call
    return manifest_path


def _write_snippets(folder: Path, snippets: dict[str, bytes]) -> None:
    if snippets:
        folder.mkdir(exist_ok=True)
    for flag_id, audio in snippets.items():
        _write_file(folder / f"{flag_id}.ogg", audio)
    for stale in folder.glob("*.ogg"):
        if stale.stem not in snippets:
            stale.unlink()


def _write_file(path: Path, data: bytes) -> None:
    """Write via a temporary name created 0640, then rename: never a half or open file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.chmod(FILE_MODE)  # an existing temporary keeps its old mode through os.open
    os.replace(tmp, path)
