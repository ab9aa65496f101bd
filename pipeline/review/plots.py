"""The call view's plot: each speaker's valence and arousal over time, their confidence, and
the flagged spans, as an inline SVG (matplotlib, no external assets)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: render to bytes only
import matplotlib.pyplot as plt  # noqa: E402

ROLE_COLOURS = {"customer": "#c0392b", "agent": "#2471a3", "other": "#7d3c98"}


def affect_svg(affect: list[dict], flags: list[dict], duration_s: float) -> str:
    """Three stacked panels sharing time: valence, arousal, confidence; flags shaded."""
    fig, axes = plt.subplots(3, 1, figsize=(9, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2]})
    speakers = sorted({a["speaker"] for a in affect})
    for speaker in speakers:
        rows = [a for a in affect if a["speaker"] == speaker]
        role = rows[0]["role"] or "other"
        colour = ROLE_COLOURS.get(role, "#555555")
        mids = [(a["start_s"] + a["end_s"]) / 2 for a in rows]
        label = f"{speaker} ({role})"
        axes[0].plot(mids, [a["valence"] for a in rows], color=colour, marker="o", markersize=3, label=label)
        axes[1].plot(mids, [a["arousal"] for a in rows], color=colour, marker="o", markersize=3, label=label)
        axes[2].plot(mids, [a["confidence"] for a in rows], color=colour, marker=".", label=label)
    for ax in axes:
        for f in flags:
            ax.axvspan(f["start_s"], f["end_s"], color="#f5b041", alpha=0.3, lw=0)
    axes[0].set_ylabel("valence (-1..1)")
    axes[1].set_ylabel("arousal (-1..1)")
    axes[2].set_ylabel("confidence (0..1)")
    axes[2].set_xlabel("time in the call (s)")
    for ax, (lo, hi) in zip(axes, ((-1, 1), (-1, 1), (0, 1))):
        ax.set_ylim(lo, hi)
        ax.grid(alpha=0.3)
    axes[0].set_xlim(0, max(duration_s, 1.0))
    if flags:
        axes[0].plot([], [], color="#f5b041", alpha=0.5, lw=8, label="flagged span")
    if speakers or flags:
        axes[0].legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    svg = out.getvalue()
    return svg[svg.index("<svg"):]  # drop the XML prolog: the SVG is inlined in HTML
