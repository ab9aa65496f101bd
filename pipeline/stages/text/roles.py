"""Roles: which diarized speaker is the agent, which the customer.

Stereo (one party per channel): a channel map in the call metadata
(``{"channels": {"0": "agent", "1": "customer"}}``) decides; without one, the channel whose
speakers carry the most agent cues is the agent's. Mono: the speaker with the most agent cues
(greeting and closing phrases, speaking first) is the agent, the one with the most talk time
among the others the customer, anyone else ``other``. Metadata ``{"roles": {"SPEAKER_00":
"agent"}}`` overrides per speaker. The confidence says how clear the cues were (0 = a tie).
"""

from __future__ import annotations

from pipeline.records import RoleAssignment, Utterance
from pipeline.stages import contract

import re
from collections.abc import Mapping

from pyannote.core import Annotation


AGENT, CUSTOMER, OTHER = "agent", "customer", "other"
_AGENT_PHRASES = re.compile(
    r"thank(s| you) for (calling|contacting|holding|your patience|waiting)|my name is|how (can|may) i (help|assist)"
    r"|is there anything else|have a (great|nice|good|wonderful) (day|evening|one)|speaking with|let me (check|look|see)"
    r"|i can see|your account|bear with me|i apologi[sz]e for|i('ll| will) (transfer|escalate|put you)",
    re.IGNORECASE,
)
_CUSTOMER_PHRASES = re.compile(
    r"i('m| am) calling (about|because|to)|i have a (problem|question|complaint)|my (internet|bill|order|package|account|password|card)"
    r"|i('ve| have) been (waiting|trying|charged)|i want (to|a refund)|can you (help|fix|tell) me",
    re.IGNORECASE,
)


def _cue_scores(speakers: list[str], turns: Annotation, utterances: list[Utterance]) -> dict[str, float]:
    first = min(speakers, key=lambda s: turns.label_timeline(s)[0].start)
    score = {s: 1.0 if s == first else 0.0 for s in speakers}
    for u in utterances:
        if u.speaker in score:
            score[u.speaker] += 2.0 * len(_AGENT_PHRASES.findall(u.text)) - 1.0 * len(_CUSTOMER_PHRASES.findall(u.text))
    return score


def _confidence(best: float, second: float) -> float:
    margin = best - second
    return round(margin / (margin + 2.0), 3)  # 0 when tied; -> 1 as the cues pile up


def assign_roles(
    turns: Annotation,
    utterances: list[Utterance],
    given_roles: Mapping[str, str] | None = None,
    speaker_channel: dict[str, int] | None = None,
    channel_map: Mapping[str, str] | None = None,
) -> RoleAssignment:
    """``given_roles`` (speaker -> role) and ``channel_map`` (channel -> role) come from the
    call's metadata, already validated (pipeline.metadata)."""
    speakers = sorted(turns.labels())
    given = given_roles or {}
    if not speakers:
        return RoleAssignment({}, 0.0, "cues")
    if given and set(given) >= set(speakers):
        return RoleAssignment({s: str(given[s]) for s in speakers}, 1.0, "metadata")
    if speaker_channel:
        assignment = _roles_by_channel(speakers, turns, utterances, channel_map or {}, speaker_channel)
    else:
        assignment = _roles_by_cues(speakers, turns, utterances)
    roles = {**assignment.roles, **{s: str(r) for s, r in given.items() if s in assignment.roles}}
    return RoleAssignment(roles, assignment.agent_confidence, assignment.source)


def _roles_by_cues(speakers: list[str], turns: Annotation, utterances: list[Utterance]) -> RoleAssignment:
    if len(speakers) == 1:
        return RoleAssignment({speakers[0]: CUSTOMER}, 0.0, "cues")
    score = _cue_scores(speakers, turns, utterances)
    ranked = sorted(speakers, key=lambda s: (-score[s], s))
    agent = ranked[0]
    rest = sorted((s for s in speakers if s != agent), key=lambda s: -turns.label_duration(s))
    roles = {agent: AGENT, rest[0]: CUSTOMER, **{s: OTHER for s in rest[1:]}}
    return RoleAssignment(roles, _confidence(score[ranked[0]], score[ranked[1]]), "cues")


def _roles_by_channel(
    speakers: list[str],
    turns: Annotation,
    utterances: list[Utterance],
    channel_map: Mapping[str, str],
    speaker_channel: dict[str, int],
) -> RoleAssignment:
    mapped = {int(c): str(r) for c, r in channel_map.items()}
    if mapped and all(speaker_channel[s] in mapped for s in speakers):
        return RoleAssignment({s: mapped[speaker_channel[s]] for s in speakers}, 1.0, "channel_map")
    score = _cue_scores(speakers, turns, utterances)
    channels = sorted(set(speaker_channel.values()))
    per_channel = {c: sum(score[s] for s in speakers if speaker_channel[s] == c) for c in channels}
    ranked = sorted(channels, key=lambda c: (-per_channel[c], c))
    agent_channel = ranked[0]
    roles = {s: AGENT if speaker_channel[s] == agent_channel else CUSTOMER for s in speakers}
    second = per_channel[ranked[1]] if len(ranked) > 1 else 0.0
    return RoleAssignment(roles, _confidence(per_channel[agent_channel], second), "channel_cues")


STAGE = contract.Stage("roles", backend=contract.fixed("python"), run=assign_roles)
