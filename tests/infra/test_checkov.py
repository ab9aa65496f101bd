"""checkov on infra/ (Terraform, the KubeRay manifests) and docker/ (Dockerfiles): no failed
check, every skip carries its reason inline, every file was actually scanned, and checkov still
catches a public bucket."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each scanned folder holds, per checkov framework. (The RayCluster is a custom resource,
# which checkov's Kubernetes checks do not read: only its ServiceAccount is checked here, the
# rest by test_ray_definitions.py.)
SCANS = {
    "infra": {
        "terraform": sorted(
            p.relative_to(ROOT / "infra").as_posix()
            for p in (ROOT / "infra" / "terraform").glob("*.tf")
            if re.search(r'^(resource|data) "', p.read_text(), re.M)
        ),
        "kubernetes": ["ray/kuberay-raycluster.yaml"],
    },
    "docker": {"dockerfile": sorted(p.name for p in (ROOT / "docker").glob("*.Dockerfile"))},
}
KINDS = ("passed_checks", "failed_checks", "skipped_checks")


def checkov(exe: Path, directory: Path, *options: str) -> list[dict]:
    """One report per framework. --skip-download: no call to Prisma Cloud (offline, nothing sent)."""
    done = subprocess.run(
        [str(exe), "--directory", str(directory), "--output", "json", "--skip-download", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: some check failed
    reports = json.loads(done.stdout)
    return reports if isinstance(reports, list) else [reports]


@cache
def _scan(exe: Path, folder: str) -> dict[str, dict]:
    return {report["check_type"]: report for report in checkov(exe, ROOT / folder)}


@pytest.fixture(scope="module")
def scan(infra_tool):
    return lambda folder: _scan(infra_tool("checkov"), folder)


@pytest.mark.parametrize("folder", sorted(SCANS))
def test_no_failed_check(scan, folder):
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for report in scan(folder).values()
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("folder", sorted(SCANS))
def test_every_file_was_scanned(scan, folder):
    reports = scan(folder)
    for framework, files in SCANS[folder].items():
        assert framework in reports, f"checkov ran no {framework} checks on {folder}/"
        results = reports[framework]["results"]
        assert reports[framework]["summary"]["parsing_errors"] == 0, results.get("parsing_errors")
        # checkov's paths are relative to a folder of its own choosing: compare their ends.
        seen = {c["file_path"] for kind in KINDS for c in results[kind]}
        missing = [f for f in files if not any(path.endswith("/" + f) for path in seen)]
        assert not missing, f"{framework}: no check read {missing}"
        assert len(results["passed_checks"]) >= 2 * len(files)


@pytest.mark.parametrize("folder", sorted(SCANS))
def test_every_skip_gives_its_reason(scan, folder):
    skipped = [c for report in scan(folder).values() for c in report["results"]["skipped_checks"]]
    for check in skipped:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason.split()) >= 4, f"{check['check_id']} on {check['resource']} skipped without a reason"


def test_checkov_catches_a_public_bucket(infra_tool, tmp_path):
    (tmp_path / "main.tf").write_text(
        'resource "aws_s3_bucket" "open" {\n  bucket = "open-to-everyone"\n  acl    = "public-read"\n}\n'
    )
    (report,) = checkov(infra_tool("checkov"), tmp_path, "--framework", "terraform")
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert "CKV_AWS_20" in failed  # the bucket ACL allows public READ
