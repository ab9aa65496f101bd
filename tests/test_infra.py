"""Deployment definitions that must agree with the code."""

import re
from pathlib import Path

from pipeline.schemas import TABLES

ROOT = Path(__file__).resolve().parent.parent


def test_terraform_grants_writes_to_exactly_the_tables_the_pipeline_writes():
    text = (ROOT / "infra/terraform/variables.tf").read_text()
    block = re.search(r'variable "curated_tables" \{.*?default\s*=\s*\[(.*?)\]', text, re.S)
    assert block, "curated_tables variable not found"
    assert sorted(re.findall(r'"([a-z_]+)"', block.group(1))) == sorted(TABLES)
