"""The per-call manifest: what was analysed, how, and whether it is committed.

A call's manifest is written last, after all its Parquet files: its presence is the commit.
Status is ``ok`` (tables written and loadable) or ``quarantined`` (unusable input, a failed
stage or a failed quality gate; ``reason`` says why and no table of the call is loaded).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["ok", "quarantined"]


@dataclass
class CallManifest:
    call_id: str
    status: Status = "ok"  # until quarantine() says why not
    reason: str | None = None
    source_uri: str | None = None
    sha256: str | None = None
    call_date: str | None = None  # YYYY-MM-DD, the partition
    duration_s: float | None = None
    pipeline_version: str | None = None
    schema_version: str | None = None
    settings_fingerprint: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # model and library versions used
    stage_seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows written
    table_keys: dict[str, str] = field(default_factory=dict)  # table -> object key / path
    quality: dict | None = None  # set by the quality gate
    # Problems that did not stop the call, e.g. a video stream broken half-way (audio still used).
    warnings: list[str] = field(default_factory=list)
    created_at: str | None = None
    # The call metadata's pseudonymous customer id: erasure by subject finds the call by it.
    subject_id: str | None = None
    # Names this commit; every Parquet file of the commit carries it in its footer
    # (pipeline.storage.curated.COMMIT_ID_KEY), so the marts load a call only while its files and
    # its manifest agree (a reprocessing half-way leaves them disagreeing). None: before commit ids.
    commit_id: str | None = None

    def quarantine(self, reason: str) -> "CallManifest":
        """Mark the call quarantined because of ``reason`` (none of its tables will be loaded).
        Returns the manifest itself, so a new one reads ``CallManifest(call_id).quarantine(why)``."""
        self.status = "quarantined"
        self.reason = reason
        return self

    @property
    def loadable(self) -> bool:
        """Committed ok and passed the quality gate: what the marts load and retention may act on."""
        return self.status == "ok" and bool(self.quality) and self.quality.get("passed") is True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "CallManifest":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
