"""SHA-256 of a file: the one helper behind every digest the pipeline records (inputs in
manifests, model weights in version strings, exported checkpoints)."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike) -> str:
    """Hex digest, read in blocks: a file of any size costs no memory."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
