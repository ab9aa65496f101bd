"""The call metadata contract: the ``<call_id>.json`` sidecar of a recording (or ``--metadata``).

Validated by pydantic in strict mode: types are checked, never coerced (``"false"`` is an
error, not a boolean), unknown keys are errors that name the key (when it looks like a field
name), and size and nesting depth are bounded before anything is parsed into objects. A UTF-8 byte-order mark is tolerated.
Invalid metadata quarantines the call with a reason naming the field, before any analysis.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

MAX_BYTES = 64 * 1024  # a sidecar is a few hundred bytes; anything near this is not metadata
MAX_DEPTH = 6  # the contract's deepest value is two levels down (consent.video)

Role = Literal["agent", "customer", "other"]
# Labels as the diarization writes them (roles are given per label).
SpeakerLabel = Annotated[str, StringConstraints(pattern=r"^SPEAKER_[0-9]{2,3}$")]
CallId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")]
# An identifier from the contact centre's routing (an agent's login, a queue's name): it is stored
# and filtered on, so it is held to characters that are safe in keys, SQL literals and URLs.
RoutingId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}$")]
# ISO 3166-1 alpha-2 (e.g. "DE", "US"), or "EU" when only the union is known.
Jurisdiction = Annotated[str, StringConstraints(pattern=r"^(EU|[A-Z]{2})$")]
Purpose = Literal["quality", "coaching"]


class MetadataError(ValueError):
    """The metadata breaks the contract; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Consent(_Strict):
    """What the call's metadata allows. Absent keys: allowed for audio, denied for video.

    These are the customer's consents. ``agent_affect`` is the agent's own consent to affect
    inference for personal coaching; it counts only where settings allow coaching at all
    (``pipeline.stages.inference_policy``)."""

    text_affect: bool = True
    voice_affect: bool = True
    video: bool = False
    agent_affect: bool = False


class CallMetadata(_Strict):
    consent: Consent = Field(default_factory=Consent)
    min_speakers: int = Field(1, ge=1, le=32)
    max_speakers: int | None = Field(None, ge=1, le=32)
    # Stereo recordings: which party is on which channel.
    channels: dict[Literal["0", "1"], Role] = Field(default_factory=dict)
    roles: dict[SpeakerLabel, Role] = Field(default_factory=dict)
    call_date: str | None = None  # YYYY-MM-DD; the batch takes the date from the key instead
    call_id: CallId | None = None
    # Who took the call and the queue it came in on: carried to the tables for the QA queue's filters.
    agent_id: RoutingId | None = None
    queue: RoutingId | None = None
    # A pseudonymous customer id from the operator's CRM: erasure requests name it
    # (``callaffect erase --subject``); the mapping to a person stays with the operator.
    subject_id: RoutingId | None = None
    # Where the call was taken and what it is processed for. Both can only narrow what the
    # deployment's settings allow (``pipeline.stages.inference_policy``).
    jurisdiction: Jurisdiction | None = None
    purposes: list[Purpose] = Field(default_factory=lambda: ["quality"], max_length=2)

    @field_validator("call_date")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if len(value) != 10:
                    raise ValueError
                dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError("expected a date as YYYY-MM-DD") from None
        return value

    @model_validator(mode="after")
    def _speaker_bounds(self) -> "CallMetadata":
        if self.max_speakers is not None and self.max_speakers < self.min_speakers:
            raise ValueError("max_speakers is below min_speakers")
        return self


def _depth(value: object) -> int:
    """Nesting depth of parsed JSON, without recursion (the input may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


# A key the contract does not know is the sender's text: the reason (kept in the manifest, the
# marts and logs) names it only when it looks like a field name, never when it may be a value
# such as a name, an e-mail or a number ("john.smith@...", "Maria Lopez", "callback_07700900123").
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_DIGIT_RUN = re.compile(r"\d{3}")


def _shown_key(key: str) -> str:
    if _FIELD_NAME.match(key) and not _DIGIT_RUN.search(key):
        return key
    return f"<a {len(key)}-character key not shown>"


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    loc = [str(p) for p in first["loc"]]
    if loc[-1:] == ["[key]"]:  # a bad key of a mapping: name the key, not pydantic's marker
        loc = [*loc[:-2], f"key {_shown_key(loc[-2])!r}"] if len(loc) > 2 else loc[:-1]
    if first["type"] == "extra_forbidden":
        return f"unknown field {'.'.join([*loc[:-1], _shown_key(loc[-1])])!r}"
    where = ".".join(loc) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}"


def validate(data: object) -> CallMetadata:
    """Parsed JSON (or a dict given by a caller) -> CallMetadata, or MetadataError."""
    if isinstance(data, CallMetadata):
        return data
    if not isinstance(data, dict):
        raise MetadataError(f"metadata must be a JSON object, not {type(data).__name__}")
    if _depth(data) > MAX_DEPTH:
        raise MetadataError(f"metadata nested deeper than {MAX_DEPTH} levels")
    try:
        return CallMetadata.model_validate(data)
    except ValidationError as exc:
        raise MetadataError(f"metadata {_describe(exc)}") from None


def parse(raw: bytes) -> CallMetadata:
    """The bytes of a sidecar -> CallMetadata, or MetadataError with a one-line reason."""
    if len(raw) > MAX_BYTES:
        raise MetadataError(f"metadata is {len(raw)} bytes, over the {MAX_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MetadataError("metadata is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise MetadataError(f"metadata nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise MetadataError(f"metadata is not valid JSON: {exc}") from None
    return validate(data)
