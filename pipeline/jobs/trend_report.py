"""`callaffect report build`: the nightly trend report, one self-contained HTML page per day.

Read from the DuckDB marts (read-only, materialised tables only) over the ``WINDOW_DAYS`` call
dates up to the report's day, and written under the curated root at ``reports/<day>/index.html``
(``report_key``), where the review app shows it to leads. Sections: calls and minutes per day;
the customers' valence with its uncertainty; frustration and flags per hour of speech; flags per
agent and per queue; the words over-represented in flagged segments; flag precision from the QA
verdicts; pipeline health; the inferences made and withheld by the inference policy. Plots
are inline SVG (matplotlib, no external asset, no script); a
section with nothing to show says so in a sentence.

The page is a function of the marts and the day alone (no build time, SVG ids salted with a
constant), so rebuilding it over unchanged marts writes the same bytes. Transcripts are personal
data: only single words of the already-redacted text reach the page, counted over many segments;
nothing of them is logged.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import jinja2
import matplotlib
import matplotlib.dates as mdates
from matplotlib.figure import Figure

from pipeline.clock import utc_now
from pipeline.settings import Settings
from pipeline.storage.curated import CuratedStore

log = logging.getLogger(__name__)

REPORTS = "reports"
WINDOW_DAYS = 56  # eight ISO weeks: enough for a trend, and for the weekly flag precision
MIN_WORD_COUNT = 3  # a word seen fewer times in flagged segments is never listed: too little evidence
TOP_WORDS = 15
TOP_GROUPS = 15  # agents or queues shown, the most flagged first
Z_95 = 1.959964  # two-sided 95% normal quantile
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# matplotlib's SVG: ids salted with a constant (the same bytes every build), no metadata (its date),
# labels never parsed as TeX (a "$" in a label is text).
_SVG_RC = {"svg.hashsalt": "callaffect-trend-report", "text.parse_math": False}
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}

SECTION_TITLES = (
    "Calls and minutes per day",
    "Customer valence over time",
    "Frustration and flags",
    "Flags per agent and per queue",
    "Words over-represented in flagged segments",
    "Flag precision from QA verdicts",
    "Pipeline health",
    "Inferences made and withheld",
)


@dataclass
class Section:
    title: str
    about: str  # what the section shows and how it is computed
    figures: list[str] = field(default_factory=list)  # inline SVG
    empty: str | None = None  # the sentence shown when there is nothing to plot
    columns: tuple[str, ...] = ()
    rows: list[tuple] = field(default_factory=list)  # already formatted for the page


def parse_day(text: str | date) -> date:
    """A report day: a date, or text in the form YYYY-MM-DD (ValueError otherwise)."""
    if isinstance(text, date):
        return date(text.year, text.month, text.day)  # a datetime's time would end up in the key
    if not isinstance(text, str) or not _DAY.fullmatch(text):
        raise ValueError(f"not a day in the form YYYY-MM-DD: {str(text)[:40]!r}")
    return date.fromisoformat(text)


def report_key(day: str | date) -> str:
    """Where a day's report lives, relative to the curated root."""
    return f"{REPORTS}/{parse_day(day).isoformat()}/index.html"


def build_trend_report(settings: Settings, day: str | date | None = None, marts_path: str | os.PathLike | None = None,
                       curated_root: str | os.PathLike | None = None) -> str:
    """Build the report for ``day`` (default: today, UTC) from the marts (default:
    settings.marts.duckdb_path), write it under ``curated_root`` (default: the configured curated
    bucket) and return its key, relative to that root."""
    end = parse_day(day) if day is not None else utc_now().date()
    start = end - timedelta(days=WINDOW_DAYS - 1)
    path = Path(marts_path or settings.marts.duckdb_path)
    if not path.is_file():
        raise FileNotFoundError(f"no marts file at {path}: build the marts first")
    with duckdb.connect(str(path), read_only=True) as con:
        sections = [build(con, start, end) for build in SECTION_BUILDERS]
        scope = _scope(con, start, end)
    page = _PAGE.render(day=end.isoformat(), start=start.isoformat(), window_days=WINDOW_DAYS, scope=scope,
                        sections=sections)
    key, data = report_key(end), page.encode("utf-8")
    CuratedStore(settings, curated_root).write_bytes(key, data, "text/html; charset=utf-8")
    log.info("trend report for %s written to %s (%d bytes)", end, key, len(data))
    return key


# --- queries and sections --------------------------------------------------------------------


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence = ()) -> list[dict]:
    result = con.execute(sql, list(params))
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def _scope(con: duckdb.DuckDBPyConnection, start: date, end: date) -> dict:
    return _rows(con, """select count(*) filter (where loaded) as loaded,
                                count(*) filter (where status = 'quarantined') as quarantined
                         from fct_call_status where call_date between ? and ?""", (start, end))[0]


def calls_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    days = _rows(con, "select call_date, calls, minutes from mart_daily_trends where call_date between ? and ? "
                      "order by call_date", (start, end))
    section = Section(SECTION_TITLES[0], "Calls loaded into the marts per call date (bars) and their audio "
                                         "in minutes (line), from mart_daily_trends.")
    if not days:
        section.empty = "No call was loaded for these dates."
        return section
    fig, ax = _figure()
    x = [d["call_date"] for d in days]
    calls, minutes = [d["calls"] for d in days], [d["minutes"] for d in days]
    bars = ax.bar(x, calls, color="#85c1e9", label="calls")
    ax.set_ylabel("calls per day (count)")
    right = ax.twinx()
    (line,) = right.plot(x, minutes, color="#1f618d", marker="o", label="audio minutes")
    right.set_ylabel("audio per day (minutes)")
    # Headroom above both series, where the legend sits.
    ax.set_ylim(0, 1.3 * max(calls))
    right.set_ylim(0, 1.3 * max(max(minutes), 1e-9))
    ax.legend(handles=[bars, line], loc="upper left", fontsize=8)
    _date_axis(ax, start, end)
    section.figures.append(_svg(fig))
    return section


def valence_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    # The day's mean weights each customer window by confidence x length (as mart_daily_trends), from
    # the per-quarter sums, which outlive the windows.
    # Windows of one call are not independent, so the standard error is the ratio estimator's
    # over calls: sqrt(n/(n-1) * sum_c (S_c - mean * W_c)^2) / sum_c W_c.
    days = _rows(con, """
        with per_call as (
            select call_date, call_id, sum(weight_s) as weight, sum(valence * weight_s) as weighted
            from fct_speaker_affect_quarters
            where role = 'customer' and call_date between ? and ?
            group by call_date, call_id
            having sum(weight_s) > 0
        ),
        per_day as (
            select call_date, count(*) as calls, sum(weighted) / sum(weight) as valence, sum(weight) as weight
            from per_call group by call_date
        )
        select d.call_date, d.calls, d.valence,
               case when d.calls > 1 then
                   sqrt(d.calls / (d.calls - 1.0) * sum(power(c.weighted - d.valence * c.weight, 2))) / d.weight
               end as std_error
        from per_day as d join per_call as c using (call_date)
        group by d.call_date, d.calls, d.valence, d.weight
        order by d.call_date""", (start, end))
    section = Section(SECTION_TITLES[1], "The customers' valence (-1 negative to 1 positive) per call date: the mean "
                      "of their windows weighted by confidence x window length, with a 95% band from the "
                      "spread between calls (none on a day with a single call).", columns=(
                          "call date", "calls", "valence", "95% interval"))
    if not days:
        section.empty = "No customer speech was scored for these dates."
        return section
    fig, ax = _figure()
    x = [d["call_date"] for d in days]
    ax.plot(x, [d["valence"] for d in days], color="#c0392b", marker="o", label="customer valence (weighted mean)")
    banded = [d for d in days if d["std_error"] is not None]
    if banded:
        ax.fill_between([d["call_date"] for d in banded], [_clip(d["valence"] - Z_95 * d["std_error"]) for d in banded],
                        [_clip(d["valence"] + Z_95 * d["std_error"]) for d in banded], color="#c0392b", alpha=0.2,
                        lw=0, label="95% interval (between calls)")
    ax.axhline(0, color="#7f8c8d", lw=0.8, ls="--", label="neutral (0)")
    ax.set_ylim(-1, 1)
    ax.set_ylabel("valence (-1..1, unitless)")
    ax.legend(loc="lower left", fontsize=8)
    _date_axis(ax, start, end)
    section.figures.append(_svg(fig))
    section.rows = [(d["call_date"].isoformat(), d["calls"], f"{d['valence']:+.2f}",
                     _interval(d["valence"] - Z_95 * d["std_error"], d["valence"] + Z_95 * d["std_error"])
                     if d["std_error"] is not None else "–") for d in days]
    return section


def frustration_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    days = _rows(con, """select call_date, calls, frustrated_calls, frustrated_call_share, flags, flags_per_speech_hour
                         from mart_daily_trends where call_date between ? and ? order by call_date""", (start, end))
    section = Section(SECTION_TITLES[2], "Top: the share of the day's calls with at least one customer-frustration "
                      "flag, with its 95% Wilson interval. Bottom: all flags per hour of detected speech "
                      "(mart_daily_trends).")
    if not days:
        section.empty = "No call was loaded for these dates, so there is nothing to flag."
        return section
    if not any(d["flags"] for d in days):
        section.empty = "No segment was flagged on these dates."
    fig, (top, bottom) = _figure(rows=2, height=5.0)
    x = [d["call_date"] for d in days]
    low_high = [_wilson(d["frustrated_calls"], d["calls"]) for d in days]
    top.plot(x, [100 * d["frustrated_call_share"] for d in days], color="#d35400", marker="o",
             label="calls with a frustration flag")
    top.fill_between(x, [100 * lo for lo, _ in low_high], [100 * hi for _, hi in low_high], color="#d35400",
                     alpha=0.2, lw=0, label="95% Wilson interval")
    top.set_ylim(0, 100)
    top.set_ylabel("share of calls (%)")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(x, [d["flags_per_speech_hour"] or 0.0 for d in days], color="#7d3c98", marker="o",
                label="flags per speech hour")
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("flags per hour of speech (1/h)")
    bottom.legend(loc="upper left", fontsize=8)
    _date_axis(bottom, start, end)
    section.figures.append(_svg(fig))
    return section


def _groups(con: duckdb.DuckDBPyConnection, column: str, start: date, end: date) -> list[dict]:
    """Per value of ``column`` (agent_id or queue, a fixed name): calls, speech hours, flags."""
    return _rows(con, f"""
        with calls as (
            select {column} as name, count(*) as calls, sum(speech_s) / 3600.0 as speech_hours
            from dim_calls where call_date between ? and ? group by all
        ),
        flags as (
            select {column} as name, count(*) as flags from mart_qa_flags where call_date between ? and ? group by all
        )
        select c.name, c.calls, c.speech_hours, coalesce(f.flags, 0) as flags,
               coalesce(f.flags, 0) / nullif(c.speech_hours, 0) as flags_per_speech_hour
        from calls as c left join flags as f on f.name is not distinct from c.name
        order by flags desc, c.name nulls last""", (start, end, start, end))


def groups_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    section = Section(SECTION_TITLES[3], "Flags per hour of detected speech on the calls each agent and each queue "
                      f"handled (the {TOP_GROUPS} most flagged; agent and queue come from the call's metadata). "
                      "Flags describe how customers sounded on those calls: context for coaching and staffing, "
                      "never a measure of a person.", columns=("by", "name", "calls", "speech hours", "flags",
                                                               "flags per speech hour"))
    notes = []
    for label, column in (("agent", "agent_id"), ("queue", "queue")):
        groups = _groups(con, column, start, end)
        known = [g for g in groups if g["name"] is not None][:TOP_GROUPS]
        unknown = next((g for g in groups if g["name"] is None), None)
        if unknown:
            notes.append(f"{unknown['flags']} flag(s) on {unknown['calls']} call(s) with no {label} given.")
        if not known:
            notes.append(f"No call on these dates gives its {label}.")
            continue
        if not any(g["flags"] for g in known):
            notes.append(f"No flag on the calls of a known {label}.")
        fig, ax = _figure(height=0.9 + 0.3 * len(known))
        names = [g["name"] for g in reversed(known)]
        ax.barh(names, [g["flags_per_speech_hour"] or 0.0 for g in reversed(known)], color="#5d6d7e",
                label=f"flags per speech hour, by {label}")
        ax.set_xlabel("flags per hour of speech (1/h)")
        ax.set_ylabel(label)
        _legend_beside(ax)
        section.figures.append(_svg(fig))
        section.rows += [(label, g["name"], g["calls"], f"{g['speech_hours']:.2f}", g["flags"],
                          _number(g["flags_per_speech_hour"], "{:.1f}")) for g in known]
    section.empty = " ".join(notes) or None
    return section


# One tokeniser for both sides of the comparison: placeholders of redacted identifiers ("[PHONE]")
# are dropped, then runs of letters (apostrophes inside) are the words.
_WORD_COUNTS = r"""
    select word, count(*) as n
    from (select unnest(regexp_extract_all(lower(regexp_replace(text, '\[[A-Z_]+\]', ' ', 'g')),
                                           '\pL+(?:''\pL+)*')) as word
          from ({source}))
    group by word"""
_FLAGGED_TEXT = "select speaker_text as text from mart_qa_flags where role = 'customer' and call_date between ? and ?"
_CUSTOMER_TEXT = "select text from fct_utterances where role = 'customer' and call_date between ? and ?"


def over_represented_words(con: duckdb.DuckDBPyConnection, start: date, end: date) -> list[dict]:
    """Words more frequent in flagged customer segments than in the rest of customer speech.

    Per word: the log odds ratio (flagged vs the rest, 0.5 added to every cell) with its 95%
    interval (Woolf), and the z of that ratio; words seen at least MIN_WORD_COUNT times in flagged
    segments, stop words left out, highest z first. The rest is all customer words minus the
    flagged ones (a word of an utterance overlapping two flags counts twice, so never below 0).
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    flagged = {w: n for w, n in con.execute(_WORD_COUNTS.format(source=_FLAGGED_TEXT), [start, end]).fetchall()}
    everything = {w: n for w, n in con.execute(_WORD_COUNTS.format(source=_CUSTOMER_TEXT), [start, end]).fetchall()}
    rest = {w: max(0, n - flagged.get(w, 0)) for w, n in everything.items()}
    n_flagged, n_rest = sum(flagged.values()), sum(rest.values())
    if not n_flagged or not n_rest:
        return []
    words = []
    for word, a in flagged.items():
        if a < MIN_WORD_COUNT or word in ENGLISH_STOP_WORDS:
            continue
        b, c, d = n_flagged - a, rest.get(word, 0), n_rest - rest.get(word, 0)
        log_odds = math.log((a + 0.5) / (b + 0.5)) - math.log((c + 0.5) / (d + 0.5))
        se = math.sqrt(1 / (a + 0.5) + 1 / (b + 0.5) + 1 / (c + 0.5) + 1 / (d + 0.5))
        if log_odds > 0:
            words.append({"word": word, "flagged": a, "rest": c, "log_odds": log_odds, "low": log_odds - Z_95 * se,
                          "high": log_odds + Z_95 * se, "z": log_odds / se})
    words.sort(key=lambda w: (-w["z"], w["word"]))
    return words[:TOP_WORDS]


def words_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    words = over_represented_words(con, start, end)
    section = Section(SECTION_TITLES[4], "Words the customer said more often in flagged segments than in the rest of "
                      "customer speech: the log odds ratio with its 95% interval, words said at least "
                      f"{MIN_WORD_COUNT} times in flagged segments, common English stop words and redaction "
                      "placeholders left out, the strongest evidence first.",
                      columns=("word", "in flagged segments", "elsewhere", "log odds ratio", "95% interval", "z"))
    if not words:
        section.empty = ("No word is over-represented in flagged segments: too few flags, or too few words in them, "
                         "on these dates.")
        return section
    fig, ax = _figure(height=0.9 + 0.3 * len(words))
    shown = list(reversed(words))
    ax.barh([w["word"] for w in shown], [w["log_odds"] for w in shown],
            xerr=[[w["log_odds"] - w["low"] for w in shown], [w["high"] - w["log_odds"] for w in shown]],
            color="#a04000", ecolor="#34495e", capsize=3, label="log odds ratio, flagged vs the rest (95% interval)")
    ax.axvline(0, color="#7f8c8d", lw=0.8)
    ax.set_xlabel("log odds ratio (natural log, unitless)")
    ax.set_ylabel("word")
    _legend_beside(ax)
    section.figures.append(_svg(fig))
    section.rows = [(w["word"], w["flagged"], w["rest"], f"{w['log_odds']:.2f}", _interval(w["low"], w["high"]),
                     f"{w['z']:.1f}") for w in words]
    return section


def precision_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    weeks = _rows(con, """select iso_week, week_start, rule_version, flags, flags_reviewed, flags_confirmed,
                                 flags_dismissed, flags_unsure, precision
                          from mart_flag_precision where week_start > ? and week_start <= ?
                          order by week_start, rule_version""", (start - timedelta(days=7), end))
    section = Section(SECTION_TITLES[5], "Per ISO week of the call and flag rule version: confirmed / (confirmed + "
                      "dismissed) among the reviewed flags (a flag's status is its latest verdict; unsure is left "
                      "out), with its 95% Wilson interval (mart_flag_precision).",
                      columns=("week", "rule version", "flags", "reviewed", "confirmed", "dismissed", "unsure",
                               "precision", "95% interval"))
    section.rows = [(w["iso_week"], w["rule_version"], w["flags"], w["flags_reviewed"], w["flags_confirmed"],
                     w["flags_dismissed"], w["flags_unsure"], _number(w["precision"], "{:.0%}"),
                     _interval(*_wilson(w["flags_confirmed"], w["flags_confirmed"] + w["flags_dismissed"]), "{:.0%}")
                     if w["flags_confirmed"] + w["flags_dismissed"] else "–") for w in weeks]
    judged = [w for w in weeks if w["flags_confirmed"] + w["flags_dismissed"]]
    if not judged:
        section.empty = ("No flag of these weeks has a confirmed or dismissed verdict yet: precision is unknown."
                         if weeks else "No flag was raised in these weeks.")
        return section
    fig, ax = _figure()
    for rule in sorted({w["rule_version"] for w in judged}):
        mine = [w for w in judged if w["rule_version"] == rule]
        low_high = [_wilson(w["flags_confirmed"], w["flags_confirmed"] + w["flags_dismissed"]) for w in mine]
        ax.errorbar([w["week_start"] for w in mine], [100 * w["precision"] for w in mine],
                    yerr=[[100 * (w["precision"] - lo) for w, (lo, _) in zip(mine, low_high)],
                          [100 * (hi - w["precision"]) for w, (_, hi) in zip(mine, low_high)]],
                    marker="o", capsize=3, label=f"{rule} (95% Wilson interval)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("precision (% of judged flags confirmed)")
    ax.legend(loc="lower left", fontsize=8)
    _date_axis(ax, start, end, label="week of the call (its Monday)")
    section.figures.append(_svg(fig))
    return section


def health_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    stages = _rows(con, """select stage, count(*) as calls, avg(real_time_factor) as mean_rtf,
                                  quantile_cont(real_time_factor, 0.95) as p95_rtf
                           from fct_stage_metrics where call_date between ? and ?
                           group by stage order by mean_rtf desc, stage""", (start, end))
    reasons = _rows(con, """select split_part(coalesce(reason, 'no reason given'), ':', 1) as reason, count(*) as calls
                            from fct_call_status where status = 'quarantined' and call_date between ? and ?
                            group by all order by calls desc, reason""", (start, end))
    section = Section(SECTION_TITLES[6], "Real-time factor by stage (processing seconds per second of audio: mean "
                      "and 95th percentile over calls, fct_stage_metrics), and the calls quarantined by reason "
                      "(fct_call_status; the reason up to its first colon).",
                      columns=("quarantine reason", "calls"), rows=[(r["reason"], r["calls"]) for r in reasons])
    notes = []
    if stages:
        fig, ax = _figure(height=0.9 + 0.3 * len(stages))
        shown = list(reversed(stages))
        names = [s["stage"] for s in shown]
        ax.barh(names, [s["mean_rtf"] for s in shown], color="#148f77", label="mean")
        ax.scatter([s["p95_rtf"] for s in shown], names, color="#0b5345", marker="|", s=120, zorder=3,
                   label="95th percentile")
        ax.set_xlabel("real-time factor (processing s per audio s)")
        ax.set_ylabel("stage")
        _legend_beside(ax)
        section.figures.append(_svg(fig))
    else:
        notes.append("No stage timings for these dates.")
    if reasons:
        fig, ax = _figure(height=0.9 + 0.3 * len(reasons))
        shown = list(reversed(reasons))
        ax.barh([r["reason"][:60] for r in shown], [r["calls"] for r in shown], color="#922b21",
                label="quarantined calls")
        ax.set_xlabel("calls quarantined (count)")
        ax.set_ylabel("reason")
        _legend_beside(ax)
        section.figures.append(_svg(fig))
    else:
        notes.append("No call was quarantined on these dates.")
    section.empty = " ".join(notes) or None
    return section


def governance_section(con: duckdb.DuckDBPyConnection, start: date, end: date) -> Section:
    """The inference policy at work: decisions per role, inference and rule, and audit completeness
    (``callaffect governance report`` adds erasures and retention deletions)."""
    decisions = _rows(con, """select role, inference, policy_rule, sum(decisions) filter (where performed) as made,
                                     sum(decisions) filter (where not performed) as withheld
                              from mart_inference_decisions where call_date between ? and ?
                              group by all order by role, inference, policy_rule""", (start, end))
    audit = _rows(con, """select coalesce(sum(affect_values), 0) as values, coalesce(sum(affect_values_audited), 0) as audited
                          from stg_manifests where loadable and call_date between ? and ?""", (start, end))[0]
    completeness = f"{audit['audited'] / audit['values']:.1%}" if audit["values"] else "no affect values"
    section = Section(SECTION_TITLES[7], "Each emotion inference the policy allowed (made) or stopped (withheld), per "
                      "role, inference and policy rule (mart_inference_decisions): no emotion is inferred about agents, "
                      "nor about anyone whose role is uncertain, and customers are read per modality with consent. "
                      f"Audit completeness (affect values with the audit row of their inference, as the quality gate "
                      f"measured it): {audit['audited']} of {audit['values']} ({completeness}).",
                      columns=("role", "inference", "policy rule", "made", "withheld"))
    section.rows = [(d["role"], d["inference"], d["policy_rule"], d["made"] or 0, d["withheld"] or 0) for d in decisions]
    if not decisions:
        section.empty = "No call was loaded on these dates."
    return section


SECTION_BUILDERS = (calls_section, valence_section, frustration_section, groups_section, words_section,
                    precision_section, health_section, governance_section)


# --- numbers and plots -----------------------------------------------------------------------


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion; (0, 1) with no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + Z_95**2 / (2 * trials)) / (1 + Z_95**2 / trials)
    half = Z_95 * math.sqrt(p * (1 - p) / trials + Z_95**2 / (4 * trials**2)) / (1 + Z_95**2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _clip(value: float) -> float:
    return max(-1.0, min(1.0, value))


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _interval(low: float, high: float, fmt: str = "{:+.2f}") -> str:
    return f"{fmt.format(low)} to {fmt.format(high)}"


def _figure(rows: int = 1, height: float = 3.2):
    fig = Figure(figsize=(9, height))
    axes = fig.subplots(rows, 1, sharex=True) if rows > 1 else fig.subplots()
    for ax in axes if rows > 1 else (axes,):
        ax.grid(alpha=0.3)
    return fig, axes


def _legend_beside(ax) -> None:
    """A legend to the right of the plot: bars reach the right edge, where it would cover them."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _date_axis(ax, start: date, end: date, label: str = "call date") -> None:
    ax.set_xlim(start - timedelta(days=1), end + timedelta(days=1))
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel(label)


def _svg(fig: Figure) -> str:
    """The figure as an SVG element to inline in HTML (no XML prolog), the same bytes every time."""
    fig.tight_layout()
    out = io.StringIO()
    with matplotlib.rc_context(_SVG_RC):
        fig.savefig(out, format="svg", metadata=_SVG_METADATA)
    svg = out.getvalue()
    return svg[svg.index("<svg"):]


_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>callaffect trend report {{ day }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
.estimates { background: #fef9e7; border-left: 4px solid #f1c40f; padding: .5rem .8rem; }
.empty { font-style: italic; color: #555; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: .9rem; } th, td { border: 1px solid #ddd; padding: .2rem .5rem; }
td { text-align: right; } td:first-child { text-align: left; }
</style>
</head>
<body>
<h1>callaffect trend report: {{ day }}</h1>
<p>Call dates {{ start }} to {{ day }} (the last {{ window_days }} days): {{ scope.loaded }} call(s) loaded,
{{ scope.quarantined }} quarantined.</p>
<p class="estimates">Every number here is an estimate. Valence, arousal and flags are model readings of
recorded speech, each with a confidence; intervals show how far the sampling alone could move them, not
how wrong the models may be. Read them as trends, never as a verdict about a person.</p>
<nav><ol>{% for s in sections %}<li><a href="#section-{{ loop.index }}">{{ s.title }}</a></li>{% endfor %}</ol></nav>
{% for s in sections %}
<section id="section-{{ loop.index }}">
<h2>{{ s.title }}</h2>
<p>{{ s.about }}</p>
{% if s.empty %}<p class="empty">{{ s.empty }}</p>{% endif %}
{% for svg in s.figures %}<figure>{{ svg | safe }}</figure>{% endfor %}
{% if s.rows %}<table>
<thead><tr>{% for c in s.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in s.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table>{% endif %}
</section>
{% endfor %}
</body>
</html>
""")
