"""Licences: every distribution installed in this venv, and every model the default profile runs,
has an allowed licence or is listed in LICENCES.toml with a reason (see that file's header)."""

from __future__ import annotations

import fnmatch
import functools
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TABLE = tomllib.loads((ROOT / "LICENCES.toml").read_text())
PROJECT = "callaffect"
# Licence files that keep commercial use out, whatever the metadata says (opensmile's classifier
# says MIT over the audEERING Research License).
RESTRICTIVE_TEXT = re.compile(
    r"research licen[cs]e|non-?commercial (?:use|purposes) only|(?:research|academic) (?:use|purposes) only"
    r"|for non-?commercial purposes|attribution-non-?commercial|\bcc[- ]by-nc\b", re.I)


# --- reading a licence string ---------------------------------------------------------------------


def family(term: str) -> str | None:
    """The allowed family a single licence term belongs to, or None."""
    term = " ".join(term.split())
    for name, patterns in TABLE["allowed"].items():
        if any(re.fullmatch(p, term, re.I) for p in patterns):
            return name
    return None


def _spdx_allowed(expression: str) -> bool:
    """An SPDX expression (AND, OR, WITH, parentheses) is allowed when every conjunct of some
    alternative is; ``X WITH exception`` is judged as X (an exception only grants more)."""
    # Operators and parentheses, else a name that may have spaces ("Apache Software License").
    tokens = re.findall(r"\(|\)|\b(?:AND|OR|WITH)\b|[^\s()]+(?:\s+(?!(?:AND|OR|WITH)\b)[^\s()]+)*", expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"{expression!r} ends too early")
        position += 1
        return tokens[position - 1]

    def atom() -> bool:
        if peek() == "(":
            take()
            value = alternatives()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expression!r}")
        else:
            value = family(take()) is not None
        if peek() == "WITH":
            take(), take()
        return value

    def conjunction() -> bool:
        value = atom()
        while peek() == "AND":
            take()
            value = atom() and value
        return value

    def alternatives() -> bool:
        value = conjunction()
        while peek() == "OR":
            take()
            value = conjunction() or value
        return value

    value = alternatives()
    if peek() is not None:
        raise ValueError(f"cannot read {expression!r} as an SPDX expression")
    return value


def allowed(licence: str) -> bool:
    """Whether a licence string as pip-licenses reports it is in an allowed family: a full
    licence text is read by its title line, "A; B" (several classifiers) as alternatives."""
    text = licence.strip()
    if "\n" in text:
        text = next(line.strip() for line in text.splitlines() if line.strip())
    neutral = {t.lower() for t in TABLE["neutral"]["terms"]}
    terms = [t.strip() for t in text.split(";") if t.strip() and t.strip().lower() not in neutral]
    return bool(terms) and any(family(t) is not None or _spdx_allowed_or_false(t) for t in terms)


def _spdx_allowed_or_false(term: str) -> bool:
    try:
        return _spdx_allowed(term)
    except ValueError:  # free text that is no SPDX expression and no known name: not allowed
        return False


def test_licence_strings_are_read_as_intended():
    assert allowed("MIT License") and allowed("BSD License") and allowed("Apache Software License")
    assert allowed("Apache-2.0 AND MIT") and allowed("BSD-2-Clause AND Apache-2.0 WITH LLVM-exception")
    assert allowed("(MIT OR GPL-3.0-only) AND BSD-3-Clause") and allowed("DFSG approved; MIT License")
    assert allowed("MIT License\n\nCopyright (c) 2022 OpenAI\n\nPermission is hereby granted")
    assert allowed("Mozilla Public License 2.0 (MPL 2.0)") and allowed("ISC License (ISCL)")
    assert not allowed("GPL-3.0-only") and not allowed("MIT AND GPL-3.0-only") and not allowed("UNKNOWN")
    assert not allowed("LGPL-2.1-or-later") and not allowed("Other/Proprietary License")
    assert not allowed("Artistic License; GNU General Public License (GPL)") and not allowed("DFSG approved")
    assert not allowed("MIT-like") and not allowed("Non-MIT")  # whole terms only
    assert not allowed("BSD (3 clause) and more") and not allowed("(MIT")


# --- what is installed ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def installed() -> dict[str, dict]:
    """pip-licenses over this interpreter's distributions, with licence and notice texts."""
    proc = subprocess.run(
        [sys.executable, "-m", "piplicenses", "--format=json", "--from=mixed", "--with-license-file",
         "--no-license-path", "--with-notice-file"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return {canonicalize_name(d["Name"]): d for d in json.loads(proc.stdout)}


def _licence_file_title(name: str) -> str:
    """The title line of the licence file(s) a distribution's metadata names (License-File),
    e.g. "MIT License"; pip-licenses may pick another file in the package (a vendored model's)."""
    from importlib.metadata import distribution

    dist = distribution(name)
    titles = []
    for listed in dist.metadata.get_all("License-File") or []:
        text = dist.read_text(f"licenses/{listed}") or dist.read_text(listed) or ""
        titles += [next((line.strip() for line in text.splitlines() if line.strip()), "UNKNOWN")]
    if titles and all(family(t) for t in titles):
        return titles[0]
    return " + ".join(titles) or "UNKNOWN"  # every file applies: anything else is named in full


def effective_licence(name: str, entry: dict) -> str:
    """The licence that governs: a correction from the table, else the metadata, else (UNKNOWN)
    the title of the licence file the distribution ships."""
    if name in TABLE["corrections"]:
        return TABLE["corrections"][name]["licence"]
    reported = entry["License"].strip()
    return _licence_file_title(name) if reported in ("", "UNKNOWN") else reported


def exception_for(name: str) -> str | None:
    return next((reason for key, reason in TABLE["exceptions"].items()
                 if fnmatch.fnmatchcase(name, canonicalize_name(key)) or fnmatch.fnmatchcase(name, key)), None)


def test_every_installed_distribution_has_an_allowed_licence_or_a_listed_reason():
    offending = [f"{name} {entry['Version']}: {effective_licence(name, entry).splitlines()[0]!r}"
                 for name, entry in sorted(installed().items())
                 if not allowed(effective_licence(name, entry)) and exception_for(name) is None]
    assert not offending, "not allowed and not listed in LICENCES.toml [exceptions]:\n" + "\n".join(offending)


def test_licence_texts_that_restrict_commercial_use_are_listed():
    """Metadata can be wrong: the licence files themselves are read for non-commercial terms."""
    restricted = {name for name, entry in installed().items()
                  if RESTRICTIVE_TEXT.search(entry.get("LicenseText", "") + entry.get("NoticeText", ""))}
    unlisted = sorted(n for n in restricted if exception_for(n) is None)
    assert not unlisted, f"licence text restricts commercial use; list it in [exceptions] (and [corrections]): {unlisted}"
    assert "opensmile" in restricted or "opensmile" not in installed()


def test_corrections_still_match_the_licence_files():
    for name, correction in TABLE["corrections"].items():
        entry = installed().get(canonicalize_name(name))
        if entry is not None:
            assert correction["evidence"] in entry["LicenseText"], f"{name}: its licence file changed; review the correction"
            assert allowed(entry["License"]) != allowed(correction["licence"]), f"{name}: the correction changes nothing"


def test_every_exception_names_something_installed_or_locked():
    locked = {canonicalize_name(line.split("==")[0]) for lock in ROOT.glob("requirements*.lock")
              for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#")}
    names = set(installed()) | locked | {PROJECT}
    stale = [key for key in TABLE["exceptions"] if not fnmatch.filter(names, canonicalize_name(key))
             and not fnmatch.filter(names, key)]
    assert not stale, f"LICENCES.toml lists what is neither installed nor locked: {stale}"


# --- models ---------------------------------------------------------------------------------------


def test_every_model_of_the_default_profile_has_an_allowed_licence_and_is_installed():
    default = [m for m in TABLE["models"] if m["default"]]
    assert {m["stage"] for m in default} >= {"speech_activity", "diarization", "transcription", "text_affect",
                                             "voice_affect", "face_detection", "face_expression"}
    for model in default:
        assert model["distribution"] == PROJECT or allowed(model["licence"]), model
        assert canonicalize_name(model["distribution"]) in installed() or model["distribution"] == PROJECT, model


def test_the_models_table_covers_every_stage_backend_of_the_default_settings():
    """A stage that changes its default backend, or a new stage with a model, must be listed."""
    from pipeline.call.analyze import STAGES
    from pipeline.settings import Settings
    from pipeline.stages.vision import face_branch

    listed = {(m["stage"], m["backend"]) for m in TABLE["models"]}
    needed = {(s.model_key, s.backend(Settings())) for s in (*STAGES, *face_branch.PARTS) if s.model_key}
    assert not needed - listed, f"stages with a model missing from LICENCES.toml [[models]]: {sorted(needed - listed)}"


@pytest.mark.parametrize("opt_in", ["opensmile-egemaps"])
def test_opt_in_backends_with_restricted_licences_are_not_the_default(opt_in):
    from pipeline.settings import Settings

    model = next(m for m in TABLE["models"] if m["backend"] == opt_in)
    assert not model["default"] and not allowed(model["licence"])
    assert Settings().voice.backend != opt_in
