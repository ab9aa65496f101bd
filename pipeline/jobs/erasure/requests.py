"""An erasure request: its contract (pydantic), and parsing one dropped in the bucket; errors name
the field, never its value."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator, model_validator

from pipeline.metadata import CallId, RoutingId

MAX_REQUEST_BYTES = 64 * 1024

RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")]
# Free text naming the operator or ticket; no control characters (it is written to records).
RequestedBy = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class RequestError(ValueError):
    """The request breaks the contract; the message names the field, never its value."""


class ErasureRequest(BaseModel):
    """One erasure request: exactly one of ``call_id`` and ``subject_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    request_id: RequestId
    call_id: CallId | None = None
    subject_id: RoutingId | None = None
    requested_by: RequestedBy
    requested_at: str | None = None  # ISO 8601 with its offset; default: when the request arrived

    @field_validator("requested_at")
    @classmethod
    def _aware_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                stamp = datetime.fromisoformat(value)
            except ValueError:
                stamp = None
            if stamp is None or stamp.tzinfo is None:
                raise ValueError("expected an ISO 8601 time with its UTC offset")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> "ErasureRequest":
        if (self.call_id is None) == (self.subject_id is None):
            raise ValueError("give exactly one of call_id and subject_id")
        target = self.target
        # Request ids name keys and records, requested_by is kept: neither may carry the id.
        if target in self.request_id:
            raise ValueError("request_id must not contain the id to erase")
        if target in self.requested_by:
            raise ValueError("requested_by must not contain the id to erase")
        return self

    @property
    def target(self) -> str:
        return self.call_id if self.call_id is not None else self.subject_id

    @property
    def kind(self) -> str:
        return "call" if self.call_id is not None else "subject"


def _describe(exc: ValidationError) -> str:
    """pydantic's first error as ``field: message``; values are never echoed."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"unknown field {where!r}"[:200]
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"


def validate_request(data: object) -> ErasureRequest:
    """A parsed request (dict) -> ErasureRequest, or RequestError."""
    if not isinstance(data, dict):
        raise RequestError(f"a request is a JSON object, not {type(data).__name__}")
    try:
        return ErasureRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError(_describe(exc)) from None


def parse_request(blob: bytes) -> ErasureRequest:
    """The bytes of a request object -> ErasureRequest, or RequestError with a one-line reason."""
    if len(blob) > MAX_REQUEST_BYTES:
        raise RequestError(f"request is {len(blob)} bytes, over the {MAX_REQUEST_BYTES}-byte limit")
    try:
        data = json.loads(blob.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8 text") from None
    except RecursionError:
        raise RequestError("request is nested too deep") from None
    except ValueError:
        raise RequestError("request is not valid JSON") from None
    return validate_request(data)
