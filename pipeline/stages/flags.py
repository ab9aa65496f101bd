"""QA flags: the customer's fused windows -> frustration segments with a score and evidence.

A window counts as frustrated when valence is low and either arousal is raised or the valence
is very low; qualifying windows closer than ``merge_gap_s`` are merged and segments shorter
than ``min_duration_s`` are dropped. The score is a strength of evidence in [0, 1], for a
person to review: never a verdict on the customer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from pipeline.settings import FlagSettings
from pipeline.records import AffectWindow, Flag, Utterance
from pipeline.stages import contract

RULE = "frustration-v1"
FLAG_TYPE = "customer_frustration"


def rule_version(settings: FlagSettings) -> str:
    """The rule with its thresholds: the defaults are the rule itself; other thresholds are a new
    version of it (``frustration-v1.<8 hex>``), so verdicts and precision are never pooled across
    thresholds (mart_flag_precision is per rule version)."""
    if settings == FlagSettings():
        return RULE
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode()).hexdigest()
    return f"{RULE}.{digest[:8]}"


def _qualifies(w: AffectWindow, s: FlagSettings) -> bool:
    if w.confidence < s.min_confidence or w.valence > s.valence_max:
        return False
    return w.arousal >= s.arousal_min or w.valence <= 2 * s.valence_max


def frustration_flags(
    windows: list[AffectWindow],
    speakers: set[str],
    utterances: list[Utterance],
    settings: FlagSettings,
    call_id: str,
) -> list[Flag]:
    hits = sorted((w for w in windows if w.speaker in speakers and _qualifies(w, settings)), key=lambda w: (w.speaker, w.start))
    groups: list[list[AffectWindow]] = []
    for w in hits:
        if groups and groups[-1][-1].speaker == w.speaker and w.start - groups[-1][-1].end <= settings.merge_gap_s:
            groups[-1].append(w)
        else:
            groups.append([w])

    flags = []
    for group in groups:
        start, end = group[0].start, max(w.end for w in group)
        if end - start < settings.min_duration_s:
            continue
        weights = [w.confidence for w in group]
        total = sum(weights)
        mean_v = sum(w.valence * c for w, c in zip(group, weights)) / total
        mean_a = sum(w.arousal * c for w, c in zip(group, weights)) / total
        strength = sum(min(1.0, max(0.0, 0.6 * -w.valence + 0.4 * max(w.arousal, 0.0))) * c for w, c in zip(group, weights))
        spoken = [u.utterance_id for u in utterances if u.speaker == group[0].speaker and u.end > start and u.start < end]
        evidence = {
            "utterance_ids": spoken,
            "windows": len(group),
            "negative_text_windows": sum(1 for w in group if (w.text_valence or 0) <= settings.valence_max),
            "raised_voice_windows": sum(1 for w in group if (w.voice_arousal or 0) >= settings.arousal_min),
        }
        flags.append(
            Flag(
                flag_id=f"{call_id}:{group[0].speaker}:{start:.1f}",
                speaker=group[0].speaker,
                start=start,
                end=end,
                score=round(min(1.0, strength / total), 4),
                confidence=round(total / len(group), 4),
                mean_valence=round(mean_v, 4),
                mean_arousal=round(mean_a, 4),
                evidence=json.dumps(evidence, sort_keys=True),
            )
        )
    return flags


STAGE = contract.Stage(
    "flags", backend=contract.fixed("rules"), run=frustration_flags,
    model_key="flags", model_version=lambda settings: rule_version(settings.flags),
)
