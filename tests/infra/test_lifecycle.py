"""The S3 lifecycle rules (infra/terraform) are a backstop that matches the retention settings:
never ahead of the retention job, and what the job deletes is final before the backstop fires.

The Terraform is parsed with python-hcl2 (Terraform itself is not installed here); expressions
are evaluated from the variables' defaults (or terraform.tfvars.example), the only inputs they use.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import hcl2
import pytest

from pipeline.settings import RetentionSettings, S3Settings
from pipeline.storage.curated import SNIPPETS

TERRAFORM = Path(__file__).resolve().parents[2] / "infra" / "terraform"
_REFERENCE = re.compile(r"\b(var|local)\.([a-z_][a-z0-9_]*)")


def _unquote(text):
    return text[1:-1] if isinstance(text, str) and len(text) >= 2 and text[0] == text[-1] == '"' else text


@cache
def _parsed(name: str) -> dict:
    with open(TERRAFORM / name) as fh:
        return hcl2.load(fh)


def _variables() -> dict[str, dict]:
    return {_unquote(name): body for block in _parsed("variables.tf")["variable"] for name, body in block.items()}


def _locals() -> dict[str, object]:
    found = {}
    for name in ("main.tf", "s3.tf", "iam.tf"):
        for block in _parsed(name).get("locals", []):
            found.update({k: v for k, v in block.items() if k != "__is_block__"})
    return found


def _evaluate(expr, inputs: dict[str, object]):
    """A Terraform expression of the forms these files use for lifecycle values: a number, or
    "${...}" with var./local. references, string interpolation, and "+" between numbers."""
    if not isinstance(expr, str):
        return expr
    text = _unquote(expr)
    if re.fullmatch(r"\$\{[^{}]*\}", text):  # one expression
        terms = [t.strip() for t in text[2:-1].split("+")]
        values = [_term(t, inputs) for t in terms]
        return sum(values) if len(values) > 1 else values[0]
    return re.sub(r"\$\{([^{}]*)\}", lambda m: str(_term(m.group(1).strip(), inputs)), text)  # interpolation


def _term(term: str, inputs: dict[str, object]):
    if re.fullmatch(r"\d+", term):
        return int(term)
    kind, name = term.split(".", 1)
    if kind == "var":
        return inputs[name]
    if kind == "local":
        return _evaluate(_locals()[name], inputs)
    raise AssertionError(f"unsupported term {term!r}")


def _defaults() -> dict[str, object]:
    return {name: _unquote(body.get("default")) for name, body in _variables().items()}


def _rules(bucket: str) -> list[dict]:
    for block in _parsed("s3.tf")["resource"]:
        found = block.get('"aws_s3_bucket_lifecycle_configuration"', {}).get(f'"{bucket}"')
        if found:
            return found["rule"]
    raise AssertionError(f"no lifecycle configuration for the {bucket} bucket")


def _rule(bucket: str, rule_id: str) -> dict:
    [rule] = [r for r in _rules(bucket) if _unquote(r["id"]) == rule_id]
    assert _unquote(rule["status"]) == "Enabled"
    return rule


def _expiration_days(bucket: str, rule_id: str, inputs) -> tuple[str, int]:
    rule = _rule(bucket, rule_id)
    [filt] = rule["filter"]
    [expiration] = rule["expiration"]
    return _evaluate(filt["prefix"], inputs), _evaluate(expiration["days"], inputs)


def _tfvars_example() -> dict[str, object]:
    with open(TERRAFORM / "terraform.tfvars.example") as fh:
        return {k: _unquote(v) for k, v in hcl2.load(fh).items() if not k.startswith("__")}


@pytest.fixture(params=["defaults", "tfvars.example"])
def inputs(request) -> dict[str, object]:
    values = _defaults()
    if request.param == "tfvars.example":
        values.update(_tfvars_example())
    return values


def test_the_terraform_mirrors_the_retention_settings_defaults():
    defaults, settings = _defaults(), RetentionSettings()
    assert defaults["retention_raw_max_age_days"] == settings.raw_max_age_days
    assert defaults["retention_snippet_max_age_days"] == settings.snippet_max_age_days
    assert defaults["raw_prefix"] == S3Settings().raw_prefix
    example = _tfvars_example()
    assert example["retention_raw_max_age_days"] == settings.raw_max_age_days
    assert example["retention_snippet_max_age_days"] == settings.snippet_max_age_days
    assert set(example) <= set(_variables()), "the example sets a variable that is not declared"


def test_raw_media_expires_raw_limit_plus_margin_after_upload(inputs):
    prefix, days = _expiration_days("raw", "recordings-backstop", inputs)
    assert prefix == inputs["raw_prefix"] == S3Settings().raw_prefix
    margin = inputs["lifecycle_margin_days"]
    assert days == inputs["retention_raw_max_age_days"] + margin
    # The job deletes processed media once the call is older than the limit (the day after it,
    # at its daily run); lifecycle counts from upload, which a recorder ahead of UTC may date a
    # day before the call's date folder. 2 days covers both: never ahead of the job.
    assert margin >= 2 and days - inputs["retention_raw_max_age_days"] >= 2


def test_snippets_expire_on_the_curated_snippets_prefix_at_their_limit_plus_margin(inputs):
    prefix, days = _expiration_days("curated", "snippets-backstop", inputs)
    assert prefix == f"{inputs['curated_prefix']}{SNIPPETS}/"
    assert days == inputs["retention_snippet_max_age_days"] + inputs["lifecycle_margin_days"]


@pytest.mark.parametrize("bucket, rule_id, variable", [
    ("raw", "purge-deleted-versions", "raw_noncurrent_days"),
    ("curated", "noncurrent-and-uploads", "curated_noncurrent_days"),
])
def test_noncurrent_versions_expire_on_the_whole_bucket_before_the_backstop_would_fire(inputs, bucket, rule_id, variable):
    rule = _rule(bucket, rule_id)
    assert [{k: v for k, v in f.items() if k != "__is_block__"} for f in rule["filter"]] == [{}]  # every key
    [noncurrent] = rule["noncurrent_version_expiration"]
    days = _evaluate(noncurrent["noncurrent_days"], inputs)
    assert days == inputs[variable]
    # What the job deletes (or rewrites) is final no later than the backstop would have deleted it.
    assert 1 <= days <= inputs["lifecycle_margin_days"]


def test_every_reference_in_the_terraform_is_declared():
    variables, defined = set(_variables()), set(_locals())
    for path in sorted(TERRAFORM.glob("*.tf")):
        for kind, name in _REFERENCE.findall(path.read_text()):
            assert name in (variables if kind == "var" else defined), f"{path.name}: {kind}.{name} is not declared"
