"""The quality gate: a great-expectations suite over one call's tables, run before the marts.

``gate_call_tables`` checks one call's tables (keys, value ranges, time order, roles, one calls
row), that affect exists for customers only (the inference policy), and audit completeness:
every affect value has the audit row of a performed inference about that speaker. ``gate_committed_calls`` runs it on committed calls under a curated root and records the
verdict in each call's manifest; a call that fails is quarantined there, so the marts never load
it (they load only ``status == "ok"`` with ``quality.passed``). Calls are read and their
manifests rewritten through pipeline.storage.curated.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.clock import utc_now
from pipeline.manifest import CallManifest
from pipeline.schemas import TABLES
from pipeline.settings import Settings
from pipeline.storage.curated import CuratedStore, table_key

SUITE_NAME = "callaffect_call_tables"
# Bump when an expectation changes: manifests record which suite passed them.
SUITE_VERSION = "3"  # 2: affect of customers only; audit.policy_rule; audit completeness. 3: speaker_affect_quarters
SUITE = f"{SUITE_NAME}@{SUITE_VERSION}"

# Tables every committed ok call must have (audit is checked when present).
REQUIRED_TABLES = ("calls", "speaker_turns", "utterances", "speaker_affect", "qa_flags", "stage_metrics")
ROLES = ("agent", "customer", "other")  # pipeline.stages.text.roles
# Times may overshoot the decoded duration by a frame or a window's rounding.
END_TOLERANCE_S = 0.5
_MAX_EXAMPLES = 3


# --- the suite ---------------------------------------------------------------------------------


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)  # human-readable, one per failed check
    suite: str = SUITE
    seconds: float = 0.0
    # Affect values in speaker_affect, face_affect and coaching_affect, and how many of them have
    # the audit row of a performed inference about that speaker in that modality.
    affect_values: int = 0
    affect_values_audited: int = 0


@dataclass(frozen=True)
class _Check:
    expectation: Any  # a great_expectations Expectation
    column: str | None  # None: a table-level check
    message: str  # what an unexpected value is, e.g. "values outside [-1, 1]"


def _checks() -> dict[str, list[_Check]]:
    """The expectations per table. Parameters ($PARAMETER) are filled per call."""
    import great_expectations.expectations as gxe

    def not_null(col: str) -> _Check:
        return _Check(gxe.ExpectColumnValuesToNotBeNull(column=col), col, "null values")

    def between(col: str, lo: float | None, hi: float | None, what: str | None = None) -> _Check:
        what = what or (f"values outside [{lo:g}, {hi:g}]" if hi is not None else f"values below {lo:g}")
        return _Check(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi), col, what)

    def unique(*cols: str) -> _Check:
        if len(cols) == 1:
            return _Check(gxe.ExpectColumnValuesToBeUnique(column=cols[0]), cols[0], "duplicate values")
        exp = gxe.ExpectCompoundColumnsToBeUnique(column_list=list(cols))
        return _Check(exp, "+".join(cols), "duplicate rows")

    def this_call() -> _Check:
        exp = gxe.ExpectColumnValuesToBeInSet(column="call_id", value_set={"$PARAMETER": "call_ids"})
        return _Check(exp, "call_id", "rows of another call")

    def timed(order: bool = True, end_strict: bool = True) -> list[_Check]:
        checks = [
            not_null("start_s"),
            not_null("end_s"),
            between("start_s", 0.0, None),
            _Check(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_s", column_B="start_s", or_equal=not end_strict),
                "end_s",
                "rows ending before they start" if not end_strict else "rows not ending after they start",
            ),
            _Check(
                gxe.ExpectColumnValuesToBeBetween(column="end_s", max_value={"$PARAMETER": "max_end_s"}),
                "end_s",
                f"values after the end of the call (+{END_TOLERANCE_S:g} s)",
            ),
        ]
        if order:
            # _prev_start_s: the same speaker's previous row's start (added before validation).
            exp = gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="start_s", column_B="_prev_start_s", or_equal=True, ignore_row_if="either_value_is_missing"
            )
            checks.append(_Check(exp, "start_s", "rows out of time order within speaker"))
        return checks

    def customers_only() -> list[_Check]:
        # The inference policy reads customers only; a row about anyone else is a policy breach.
        return [not_null("role"), _Check(gxe.ExpectColumnValuesToBeInSet(column="role", value_set=["customer"]), "role",
                                         "affect rows about a non-customer (inference policy)")]

    def speaker_keys() -> list[_Check]:
        in_roles = gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES))
        role = _Check(in_roles, "role", f"values not in {list(ROLES)}")
        return [not_null("call_id"), this_call(), not_null("speaker"), not_null("role"), role]

    return {
        "calls": [
            _Check(gxe.ExpectTableRowCountToEqual(value=1), None, "expected exactly 1 row"),
            not_null("call_id"),
            not_null("call_date"),
            not_null("duration_s"),
            _Check(
                gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=0, strict_min=True),
                "duration_s",
                "values not above 0",
            ),
            between("speech_s", 0.0, None),
            _Check(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="duration_s", column_B="speech_s", or_equal=True),
                "speech_s",
                "values longer than the call",
            ),
            between("num_speakers", 0, None),
        ],
        "speaker_turns": [*speaker_keys(), *timed(), unique("speaker", "start_s")],
        "utterances": [
            *speaker_keys(),
            not_null("utterance_id"),
            unique("utterance_id"),
            not_null("text"),
            between("n_words", 0, None),
            between("asr_confidence", 0.0, 1.0),
            between("text_valence", -1.0, 1.0),
            # A one-word utterance can have zero length in word timestamps.
            *timed(end_strict=False),
        ],
        "speaker_affect": [
            *speaker_keys(),
            *customers_only(),
            *(not_null(c) for c in ("valence", "arousal", "confidence")),
            *(between(c, -1.0, 1.0) for c in ("valence", "arousal", "text_valence", "voice_valence", "voice_arousal")),
            between("confidence", 0.0, 1.0),
            *timed(),
            unique("speaker", "start_s"),
        ],
        "speaker_affect_quarters": [
            *speaker_keys(),
            *customers_only(),
            between("quarter", 1, 4),
            between("windows", 1, None),
            between("weight_s", 0.0, None),
            *(between(c, -1.0, 1.0) for c in ("valence", "arousal")),
            unique("speaker", "quarter"),
        ],
        "qa_flags": [
            *speaker_keys(),
            not_null("flag_id"),
            unique("flag_id"),
            not_null("flag_type"),
            *(not_null(c) for c in ("score", "confidence")),
            between("score", 0.0, 1.0),
            between("confidence", 0.0, 1.0),
            between("mean_valence", -1.0, 1.0),
            between("mean_arousal", -1.0, 1.0),
            *timed(),
        ],
        "stage_metrics": [
            not_null("call_id"),
            this_call(),
            not_null("stage"),
            unique("stage"),
            between("seconds", 0.0, None),
            between("real_time_factor", 0.0, None),
        ],
        "audit": [not_null("call_id"), this_call(), not_null("inference"), not_null("performed"), not_null("basis"),
                  not_null("policy_rule")],
        "face_tracks": [
            not_null("call_id"),
            this_call(),
            not_null("track_id"),
            unique("track_id"),
            between("link_confidence", 0.0, 1.0),
            between("first_s", 0.0, None),
            _Check(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="last_s", column_B="first_s", or_equal=True),
                "last_s",
                "tracks ending before they start",
            ),
            between("n_detections", 1, None),
            between("n_usable", 0, None),
            *(between(c, 0.0, 1.0, "values outside the frame") for c in ("box_x0", "box_y0", "box_x1", "box_y1")),
            # A track is linked to a speaker only with a role; an unlinked one has neither.
            _Check(gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)), "role", f"values not in {list(ROLES)}"),
        ],
        "face_affect": [
            not_null("call_id"),
            this_call(),
            not_null("track_id"),
            *customers_only(),
            not_null("model"),
            *(not_null(c) for c in ("valence", "arousal", "confidence")),
            *(between(c, -1.0, 1.0) for c in ("valence", "arousal")),
            between("confidence", 0.0, 1.0),
            *(between(f"p_{c}", 0.0, 1.0) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")),
            between("n_frames", 1, None),
            *timed(order=False),
            unique("track_id", "model", "start_s"),
        ],
    }


class _Suite:
    """The ephemeral GE context, one pandas asset and one suite per table: built once per process."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas(SUITE_NAME)
        self.checks = _checks()
        self.batches = {}
        self.suites = {}
        self.by_id: dict[str, _Check] = {}  # GE reports results in its own order, keyed by id
        for table, checks in self.checks.items():
            self.batches[table] = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("whole")
            suite = gx.ExpectationSuite(name=f"{SUITE_NAME}.{table}", expectations=[c.expectation for c in checks])
            self.suites[table] = self.context.suites.add(suite)
            self.by_id.update({exp.id: check for exp, check in zip(self.suites[table].expectations, checks, strict=True)})
        # GE's validator is not documented as thread-safe; the gate may be called from threads.
        self.lock = threading.Lock()

    def validate(self, table: str, frame, parameters: dict) -> list[str]:
        with self.lock:
            batch = self.batches[table].get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(self.suites[table], expectation_parameters=parameters, result_format="SUMMARY")
        failures = []
        for res in result.results:
            if res.success:
                continue
            check = self.by_id[res.expectation_config.id]
            where = f"{table}.{check.column}" if check.column else table
            info = res.exception_info or {}
            if info.get("raised_exception"):
                first = (info.get("exception_message") or "").splitlines()[:1]
                failures.append(f"{where}: check could not run ({first[0] if first else 'error'})")
            elif check.column is None:
                failures.append(f"{where}: {check.message}, found {res.result.get('observed_value')}")
            else:
                count = res.result.get("unexpected_count")
                examples = ", ".join(_show(v) for v in (res.result.get("partial_unexpected_list") or [])[:_MAX_EXAMPLES])
                failures.append(f"{where}: {count} {check.message}" + (f" (e.g. {examples})" if examples else ""))
        return failures


_suite: _Suite | None = None
_suite_lock = threading.Lock()


def _get_suite() -> _Suite:
    global _suite
    with _suite_lock:
        if _suite is None:
            _suite = _Suite()
        return _suite


def _show(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, float) or hasattr(value, "dtype"):
        try:
            return f"{float(value):g}"
        except (TypeError, ValueError):
            pass
    return repr(value) if isinstance(value, str) else str(value)


def _frame(table: pa.Table):
    frame = table.to_pandas()
    if "speaker" in frame.columns and "start_s" in frame.columns:
        # Time order is checked against the same speaker's previous row, in file order.
        frame["_prev_start_s"] = frame.groupby("speaker", sort=False, dropna=False)["start_s"].shift()
    return frame


def gate_call_tables(tables: dict[str, pa.Table]) -> GateResult:
    """Run the suite on one call's tables. Missing tables, missing or mistyped columns fail
    without running the table's expectations."""
    started = time.perf_counter()
    suite = _get_suite()
    failures: list[str] = []
    failures += [f"{name}: table missing" for name in REQUIRED_TABLES if name not in tables]
    checkable = {}
    for name, table in tables.items():
        if name not in suite.checks:
            continue
        missing = [f.name for f in TABLES[name] if f.name not in table.column_names]
        # A wrong type would break the checks below and the marts' union of files by name.
        mistyped = [
            f"{name}.{f.name}: type {table.schema.field(f.name).type}, expected {f.type}"
            for f in TABLES[name]
            if f.name in table.column_names and not table.schema.field(f.name).type.equals(f.type)
        ]
        if missing:
            failures.append(f"{name}: missing columns {', '.join(missing)}")
        failures += mistyped
        if not missing and not mistyped:
            checkable[name] = table

    calls = checkable.get("calls")
    call_ids = sorted({c for c in calls.column("call_id").to_pylist() if c is not None}) if calls is not None else []
    durations = [d for d in calls.column("duration_s").to_pylist() if d is not None] if calls is not None else []
    if not call_ids:  # no calls row: take the call id the other tables agree on
        call_ids = sorted({c for t in checkable.values() for c in t.column("call_id").to_pylist() if c is not None})[:1]
    duration = max(durations) if durations and all(math.isfinite(d) for d in durations) else None
    parameters = {
        "call_ids": call_ids,
        # Without a usable duration the calls checks fail; do not pile up end_s failures on top.
        "max_end_s": duration + END_TOLERANCE_S if duration is not None else 1e12,
    }
    for name, table in checkable.items():
        failures += suite.validate(name, _frame(table), parameters)
    failures += quarters_match_windows(checkable)
    values, audited, unaudited = audit_completeness(checkable)
    if unaudited:
        failures.append(f"audit: {values - audited} of {values} affect values have no audit row of a performed "
                        f"inference (e.g. {', '.join(unaudited[:_MAX_EXAMPLES])})")
    return GateResult(passed=not failures, failures=failures, seconds=time.perf_counter() - started,
                      affect_values=values, affect_values_audited=audited)


# Each affect column and the audited inference it comes from.
_AFFECT_INFERENCES = {"text_valence": "text_valence", "voice_arousal": "voice_arousal", "face_valence": "face_expression"}


def audit_completeness(tables: dict[str, pa.Table]) -> tuple[int, int, list[str]]:
    """(affect values, values with the audit row of a performed inference about that speaker in
    that modality, examples of unaudited ones as "speaker inference"). A fused window counts one
    value per modality it read; a face_affect row counts one face reading of its track's speaker
    (an unlinked track is audited by its "face_track:<id>" subject)."""
    audit = tables.get("audit")
    performed = {
        (a["subject"], a["inference"]) for a in (audit.to_pylist() if audit is not None else []) if a["performed"]
    }
    needed: list[tuple[str, str]] = []
    for name in ("speaker_affect", "coaching_affect"):
        for row in tables[name].to_pylist() if name in tables else []:
            needed += [(row["speaker"], inference) for column, inference in _AFFECT_INFERENCES.items() if row[column] is not None]
    if "face_affect" in tables:
        needed += [(row["speaker"] or f"face_track:{row['track_id']}", "face_expression") for row in tables["face_affect"].to_pylist()]
    missing = [f"{subject} {inference}" for subject, inference in needed if (subject, inference) not in performed]
    return len(needed), len(needed) - len(missing), sorted(set(missing))


# Relative slack for sums of rounded float64 values, written and re-added in another order.
_SUM_TOLERANCE = 1e-6


def quarters_match_windows(tables: dict[str, pa.Table]) -> list[str]:
    """Failures where speaker_affect_quarters does not sum to the call's speaker_affect windows
    (window count, confidence-seconds, weighted valence and arousal, per speaker): the trends
    read the quarters, the review app the windows, and both must tell the same story."""
    if "speaker_affect_quarters" not in tables or "speaker_affect" not in tables:
        return []
    windows: dict[str, list[float]] = {}
    for w in tables["speaker_affect"].to_pylist():
        weight = w["confidence"] * (w["end_s"] - w["start_s"])
        acc = windows.setdefault(w["speaker"], [0.0, 0.0, 0.0, 0.0])
        for i, value in enumerate((1.0, weight, w["valence"] * weight, w["arousal"] * weight)):
            acc[i] += value
    quarters: dict[str, list[float]] = {}
    for q in tables["speaker_affect_quarters"].to_pylist():
        acc = quarters.setdefault(q["speaker"], [0.0, 0.0, 0.0, 0.0])
        for i, value in enumerate((q["windows"], q["weight_s"], (q["valence"] or 0.0) * q["weight_s"],
                                   (q["arousal"] or 0.0) * q["weight_s"])):
            acc[i] += value
    names = ("windows", "weight_s", "valence x weight_s", "arousal x weight_s")
    failures = []
    for speaker in sorted(windows.keys() | quarters.keys()):
        got, want = quarters.get(speaker, [0.0] * 4), windows.get(speaker, [0.0] * 4)
        differ = [n for n, g, e in zip(names, got, want) if not math.isclose(g, e, rel_tol=_SUM_TOLERANCE, abs_tol=_SUM_TOLERANCE)]
        if differ:
            failures.append(f"speaker_affect_quarters: {speaker}'s {', '.join(differ)} differ from the speaker_affect windows' sums")
    return failures


# --- committed calls ---------------------------------------------------------------------------


def _read_call_tables(store: CuratedStore, manifest: CallManifest) -> tuple[dict[str, pa.Table], list[str]]:
    """The call's tables as laid out, plus integrity failures (row counts unlike the manifest's)."""
    tables, failures = {}, []
    for name in TABLES:
        data = store.read_bytes(table_key("", name, manifest.call_date, manifest.call_id))
        expected = manifest.tables.get(name)
        if data is None:
            if expected == 0:  # a writer may skip empty tables; the manifest says so
                tables[name] = TABLES[name].empty_table()
            elif expected:
                failures.append(f"{name}: file missing (manifest says {expected} rows)")
            continue
        table = pq.read_table(pa.BufferReader(data))
        if expected is not None and expected != table.num_rows:
            failures.append(f"{name}: {table.num_rows} rows, manifest says {expected}")
        tables[name] = table
    return tables, failures


def gate_committed_calls(
    settings: Settings, curated_root: str | os.PathLike | None = None, call_ids: list[str] | None = None
) -> list[tuple[str, GateResult]]:
    """Gate committed ``ok`` calls not yet checked (or exactly ``call_ids``) and record the verdict.

    Each checked manifest is rewritten with ``quality``; a failing call becomes ``quarantined``
    with reason ``quality gate: <first failures>``. Returns (call_id, result) in manifest order.
    """
    store = CuratedStore(settings, curated_root)
    wanted = set(call_ids) if call_ids is not None else None
    results = []
    for _, manifest in store.manifests():
        if manifest.status != "ok":
            continue
        if wanted is None and manifest.quality is not None:
            continue
        if wanted is not None and manifest.call_id not in wanted:
            continue
        tables, integrity = _read_call_tables(store, manifest)
        result = gate_call_tables(tables)
        result.failures = integrity + result.failures
        result.passed = not result.failures
        manifest.quality = {
            "passed": result.passed,
            "failures": result.failures,
            "checked_at": utc_now().isoformat(timespec="seconds"),
            "suite": result.suite,
            "affect_values": result.affect_values,
            "affect_values_audited": result.affect_values_audited,
        }
        if not result.passed:
            manifest.quarantine("quality gate: " + "; ".join(result.failures[:3]))
        store.write_manifest(manifest)
        results.append((manifest.call_id, result))
    return results
