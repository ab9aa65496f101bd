"""`callaffect governance report --from D --to D`: what the pipeline inferred, withheld, erased
and deleted over a date range, for the people who answer for it (README "Lawful by default").

Read from the DuckDB marts (calls, consents by modality, inferences made and withheld by role
and policy rule, audit completeness as the quality gate measured it) and from the operations
records in the curated bucket (erasure records and their latency; retention's deletion logs).
Counts only: no call id, subject or word reaches the report.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

import duckdb

from pipeline.settings import Settings
from pipeline.storage import object_store
from pipeline.storage.keys import erasure_folder, retention_log_folder


@dataclass
class GovernanceReport:
    date_from: str
    date_to: str
    calls: int = 0
    call_minutes: float = 0.0
    # modality -> {"consented": n, "refused": n} over the loaded calls
    consents: dict[str, dict[str, int]] = field(default_factory=dict)
    # one row per (role, inference, policy_rule, performed): decisions and calls
    inferences: list[dict] = field(default_factory=list)
    affect_values: int = 0
    affect_values_audited: int = 0
    erasures: dict = field(default_factory=dict)
    retention_deletions: dict[str, int] = field(default_factory=dict)  # "<data kind> <action>" -> count

    @property
    def audit_completeness(self) -> float | None:
        return self.affect_values_audited / self.affect_values if self.affect_values else None

    def to_dict(self) -> dict:
        return {**asdict(self), "audit_completeness": self.audit_completeness}

    def agent_inferences_made(self) -> int:
        return sum(r["decisions"] for r in self.inferences if r["role"] == "agent" and r["performed"])


def governance_report(settings: Settings, date_from: date, date_to: date, marts_path: str | os.PathLike | None = None,
                      client=None) -> GovernanceReport:
    if date_to < date_from:
        raise ValueError(f"--to {date_to} is before --from {date_from}")
    report = GovernanceReport(date_from.isoformat(), date_to.isoformat())
    _from_marts(report, str(marts_path or settings.marts.duckdb_path), date_from, date_to)
    client = client or object_store.s3_client(settings.s3)
    report.erasures = _erasures(settings, client, date_from, date_to)
    report.retention_deletions = _retention(settings, client, date_from, date_to)
    return report


def _from_marts(report: GovernanceReport, path: str, date_from: date, date_to: date) -> None:
    span = (date_from, date_to)
    with duckdb.connect(path, read_only=True) as con:
        calls, seconds = con.execute(
            "select count(*), coalesce(sum(duration_s), 0) from dim_calls where call_date between ? and ?", span).fetchone()
        report.calls, report.call_minutes = int(calls), round(float(seconds) / 60.0, 2)
        for modality, yes, no in con.execute(
            "select modality, sum(calls_consented), sum(calls_refused) from mart_consents"
            " where call_date between ? and ? group by 1 order by 1", span).fetchall():
            report.consents[modality] = {"consented": int(yes), "refused": int(no)}
        report.inferences = [
            {"role": role, "inference": inference, "policy_rule": rule, "performed": bool(performed),
             "decisions": int(n), "calls": int(c)}
            for role, inference, rule, performed, n, c in con.execute(
                "select role, inference, policy_rule, performed, sum(decisions), sum(calls) from mart_inference_decisions"
                " where call_date between ? and ? group by all order by all", span).fetchall()
        ]
        values, audited = con.execute(
            "select coalesce(sum(affect_values), 0), coalesce(sum(affect_values_audited), 0) from stg_manifests"
            " where loadable and call_date between ? and ?", span).fetchone()
        report.affect_values, report.affect_values_audited = int(values), int(audited)


def _in_range(stamp: str | None, date_from: date, date_to: date) -> bool:
    return bool(stamp) and date_from <= datetime.fromisoformat(stamp).date() <= date_to


def _erasures(settings: Settings, client, date_from: date, date_to: date) -> dict:
    """Erasure requests completed in the range (marts rebuilt without them) and those still open."""
    s3 = settings.s3
    records = [
        json.loads(object_store.get_bytes(client, s3.curated_bucket, o.key))
        for o in object_store.list_objects(client, s3.curated_bucket, f"{erasure_folder(s3.ops_prefix)}done/")
    ]
    completed = [r for r in records if _in_range(r.get("completed_at"), date_from, date_to)]
    latencies = sorted(r["latency_s"] for r in completed if r.get("latency_s") is not None)
    removed: Counter = Counter()
    for r in completed:
        removed.update(r.get("removed") or {})
    return {
        "completed": len(completed),
        "by_target": dict(Counter(r.get("target") for r in completed)),
        "calls_erased": sum(len(r.get("calls") or []) for r in completed),
        "latency_days_median": round(latencies[len(latencies) // 2] / 86400, 3) if latencies else None,
        "latency_days_max": round(latencies[-1] / 86400, 3) if latencies else None,
        "outside_deadline": sum(1 for r in completed if r.get("within_deadline") is False),
        "open": sum(1 for r in records if not r.get("completed_at")),
        "removed": dict(sorted(removed.items())),
    }


def _retention(settings: Settings, client, date_from: date, date_to: date) -> dict[str, int]:
    s3 = settings.s3
    counts: Counter = Counter()
    day = date_from
    while day <= date_to:
        for o in object_store.list_objects(client, s3.curated_bucket, retention_log_folder(s3.ops_prefix, day)):
            for line in object_store.get_bytes(client, s3.curated_bucket, o.key).decode().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    counts[f"{entry.get('data_kind', 'raw_media')} {entry.get('action', 'delete')}"] += 1
        day += timedelta(days=1)
    return dict(sorted(counts.items()))


def render_text(report: GovernanceReport) -> str:
    """The report as plain text for an operator's terminal or a ticket."""
    lines = [f"Governance report {report.date_from} .. {report.date_to}",
             f"calls loaded: {report.calls} ({report.call_minutes:.1f} min)"]
    lines += [f"consent {m}: {c['consented']} given, {c['refused']} refused" for m, c in report.consents.items()]
    lines.append("inferences (role, inference, rule: made / withheld):")
    grouped: dict[tuple, list[int]] = {}
    for r in report.inferences:
        grouped.setdefault((r["role"], r["inference"], r["policy_rule"]), [0, 0])[0 if r["performed"] else 1] += r["decisions"]
    lines += [f"  {role:<14} {inference:<16} {rule:<18} {made:>6} / {withheld}" for (role, inference, rule), (made, withheld)
              in sorted(grouped.items())]
    completeness = report.audit_completeness
    lines.append(f"audit completeness: {report.affect_values_audited} of {report.affect_values} affect values"
                 + (f" ({completeness:.1%})" if completeness is not None else ""))
    e = report.erasures
    lines.append(f"erasures completed: {e.get('completed', 0)} (median {e.get('latency_days_median')} d, "
                 f"max {e.get('latency_days_max')} d, outside the deadline {e.get('outside_deadline', 0)}), open: {e.get('open', 0)}")
    lines += [f"retention {kind}: {n}" for kind, n in report.retention_deletions.items()] or ["retention: nothing deleted"]
    return "\n".join(lines)
