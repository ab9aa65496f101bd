"""Erasure on request (GDPR Art. 17): remove one call, or every call of a subject, everywhere
the pipeline put it, within the month the law allows.

A request names a call id or a ``subject_id`` (the pseudonymous customer id of the call metadata,
copied into the manifest). A subject's calls are found by their manifests and by the metadata
sidecars of raw recordings, every version of them, so calls not processed yet are found too.
For each call, every version (and delete marker) of these is deleted for good:

- raw bucket: each object named after the call (media, its metadata sidecar, extra media files);
- curated root: the call's partition of every top-level folder (each table, ``snippets/``,
  ``_manifests/``: one file per call and table, so no other call is touched), its review
  records (verdicts, notes, assignments) and every review view event that names it;
- ops prefix: every object whose key or body names the call (leases, failure counts, ignored
  markers); a log of many calls (``*.jsonl``, e.g. the retention log) is rewritten without the
  call's lines and its older versions are deleted;
- trend reports (``reports/<day>/``) whose window holds one of the call's dates: they quote words
  of flagged segments. ``finish_pending`` rebuilds them once the marts are rebuilt.

The DuckDB marts are rebuilt as a new file (DuckDB does not reclaim deleted rows in place) by
``finish_pending``, which is handed the marts and trend report builders by the entry points
(a job never imports another job); it checks the new file holds none of the erased calls and
removes a stale WAL or half build beside it.

Before anything is deleted, a tombstone per erased recording (its sha256: from every version of
the raw media, and the manifest's) is written, so a copy uploaded again is never analysed: the
batch deletes such a copy with its sidecar (every version) and notes it beside the erasure record.

Tombstones, erasure records and logs never hold a call or subject id: records name them by
HMAC-SHA256 under a key of this deployment (``erasure.digest_key_path``), and hold counts and
keys with the ids replaced by their digests, never content. Request ids and ``requested_by``
may not contain the ids they erase. Idempotent: a second run of a request finds nothing, removes
nothing and leaves the record as it was.

Calls being analysed are taken under their lease first: a request that meets a busy call waits
for the next run (``ErasureBusy``).

The package: ``requests`` (the request's contract), ``digests`` (ids as records name them),
``plan`` (what goes), ``erase`` (doing it; the record), ``finish`` (the marts, afterwards),
``inbox`` (requests dropped in the bucket). The names below are its interface.
"""

from pipeline.jobs.erasure.digests import Digester, call_digest, digester
from pipeline.jobs.erasure.erase import ErasureBusy, ErasureResult, erase, read_record
from pipeline.jobs.erasure.finish import ErasureError, awaiting_marts, finish_pending
from pipeline.jobs.erasure.inbox import RequestsReport, process_requests
from pipeline.jobs.erasure.requests import (
    MAX_REQUEST_BYTES,
    ErasureRequest,
    RequestError,
    parse_request,
    validate_request,
)

__all__ = [
    "MAX_REQUEST_BYTES",
    "Digester",
    "ErasureBusy",
    "ErasureError",
    "ErasureRequest",
    "ErasureResult",
    "RequestError",
    "RequestsReport",
    "awaiting_marts",
    "call_digest",
    "digester",
    "erase",
    "finish_pending",
    "parse_request",
    "process_requests",
    "read_record",
    "validate_request",
]
