"""Ids as records may name them: HMAC digests under the deployment's erasure key, and the token
matching that finds an erased id in a key, a body or a log line."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from pipeline.settings import Settings


class Digester:
    """HMAC-SHA256 of ids under the deployment's erasure key: a record can say "this call" to
    whoever holds the key and the id, and to nobody else (call ids are guessable; a plain hash
    of one is not a secret)."""

    def __init__(self, key: bytes):
        self._key = key
        self.key_id = self._mac("key-id")[:16]  # names the key in records, so a wrong key is caught

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def call(self, call_id: str) -> str:
        return self._mac(f"call:{call_id}")

    def subject(self, subject_id: str) -> str:
        return self._mac(f"subject:{subject_id}")


def _key_file(path: str) -> bytes:
    """The erasure key, from its file; a new random key (0600) when there is none yet."""
    file = Path(path).expanduser()
    if not file.is_file():
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made meanwhile by another process: read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    key = file.read_text().strip()
    if len(key) < 32:
        raise ValueError(f"setting erasure.digest_key_path: {file} holds no key (at least 32 characters)")
    return key.encode()


def digester(settings: Settings) -> Digester:
    return Digester(_key_file(settings.erasure.digest_key_path))


def call_digest(settings: Settings, call_id: str) -> str:
    """How erasure records name ``call_id`` (to find a call's record, given its id)."""
    return digester(settings).call(call_id)


# --- what names a call ------------------------------------------------------------------------


def _token(value: str, extra: str = "") -> re.Pattern:
    """``value`` as a whole id in text: not glued to more id characters on either side (a "."
    after it may start an extension, so it still counts: erring towards erasing)."""
    chars = "A-Za-z0-9_\\-" + re.escape(extra)
    return re.compile(f"(?<![{chars}.]){re.escape(value)}(?![{chars}])")


class Names:
    """Finds the erased ids in keys and bodies."""

    def __init__(self, call_ids: Iterable[str], subject_id: str | None = None):
        self.call_ids = set(call_ids)
        self._patterns = [_token(c) for c in sorted(self.call_ids)]
        if subject_id:
            self._patterns.append(_token(subject_id, "@"))

    def in_text(self, text: str) -> bool:
        return any(p.search(text) for p in self._patterns)

    def in_bytes(self, blob: bytes) -> bool:
        return self.in_text(blob.decode("utf-8", "replace"))
