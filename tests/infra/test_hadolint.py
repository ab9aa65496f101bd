"""hadolint passes every Dockerfile in docker/ under the repository's .hadolint.yaml, and that
configuration still lets hadolint catch a bad Dockerfile."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".hadolint.yaml"
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


def hadolint(exe, dockerfile, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(exe), "--config", str(CONFIG), "--no-color", *options, str(dockerfile)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_the_three_images_are_linted():
    assert {f.name for f in DOCKERFILES} >= {"airflow.Dockerfile", "ray-cpu.Dockerfile", "ray-gpu.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[f.name for f in DOCKERFILES])
def test_dockerfile_is_clean(infra_tool, dockerfile):
    done = hadolint(infra_tool("hadolint"), dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(infra_tool, tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && sudo touch x\n")
    done = hadolint(infra_tool("hadolint"), bad, "--format", "json")
    assert done.returncode != 0
    codes = {finding["code"] for finding in json.loads(done.stdout)}
    assert {"DL3007", "DL3003", "DL3004"} <= codes  # latest tag, cd instead of WORKDIR, sudo
