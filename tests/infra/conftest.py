"""The infrastructure linters (checkov, hadolint) live in a venv of their own, which
infra/local/bootstrap.sh builds from requirements-infra-tools.lock: found here the same way."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_LOCK = ROOT / "requirements-infra-tools.lock"


def tools_venv() -> Path:
    """$CALLAFFECT_TOOLS_VENV, else ~/.cache/callaffect/infra-tools-venv-<first 16 hex of the lock's sha256>."""
    override = os.environ.get("CALLAFFECT_TOOLS_VENV")
    if override:
        return Path(override)
    lock_hash = hashlib.sha256(TOOLS_LOCK.read_bytes()).hexdigest()[:16]
    return Path.home() / ".cache" / "callaffect" / f"infra-tools-venv-{lock_hash}"


@pytest.fixture(scope="session")
def infra_tool():
    """The path of a linter's executable; fails (not skips) when the venv was never built."""

    def path(name: str) -> Path:
        exe = tools_venv() / "bin" / name
        if not exe.is_file():
            pytest.fail(f"{exe} is missing: run `make setup` (infra/local/bootstrap.sh builds it from {TOOLS_LOCK.name})")
        return exe

    return path
