"""Roles: which diarized speaker is the agent and which the customer.

Skeleton rule on mono audio: the agent is the speaker with the most agent cues (greeting and
closing phrases, speaking first). Call metadata ``{"roles": {"SPEAKER_00": "agent"}}`` overrides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyannote.core import Annotation

from pipeline.stages.attribution import Utterance

AGENT, CUSTOMER, OTHER = "agent", "customer", "other"
_AGENT_PHRASES = re.compile(
    r"thank(s| you) for (calling|contacting|holding|your patience)|my name is|how (can|may) i (help|assist)"
    r"|is there anything else|have a (great|nice|good) (day|evening)|speaking with|let me (check|look)"
    r"|i can see|your account",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RoleAssignment:
    roles: dict[str, str]  # speaker -> role
    agent_confidence: float
    source: str  # "metadata" or "cues"


def assign_roles(turns: Annotation, utterances: list[Utterance], metadata: dict | None = None) -> RoleAssignment:
    speakers = sorted(turns.labels())
    given = (metadata or {}).get("roles") or {}
    if given and set(given) >= set(speakers):
        return RoleAssignment({s: str(given[s]) for s in speakers}, 1.0, "metadata")
    if not speakers:
        return RoleAssignment({}, 0.0, "cues")
    if len(speakers) == 1:
        return RoleAssignment({speakers[0]: given.get(speakers[0], CUSTOMER)}, 0.0, "cues")

    first = min(speakers, key=lambda s: turns.label_timeline(s)[0].start)
    score = {s: 1.0 if s == first else 0.0 for s in speakers}
    for u in utterances:
        if u.speaker in score:
            score[u.speaker] += 2.0 * len(_AGENT_PHRASES.findall(u.text))
    ranked = sorted(speakers, key=lambda s: (-score[s], s))
    agent = ranked[0]
    margin = score[ranked[0]] - score[ranked[1]]
    confidence = round(margin / (margin + 2.0), 3)  # 0 when tied; -> 1 as the cues pile up
    rest = sorted((s for s in speakers if s != agent), key=lambda s: -turns.label_duration(s))
    roles = {agent: AGENT, rest[0]: CUSTOMER, **{s: OTHER for s in rest[1:]}}
    roles.update({s: str(r) for s, r in given.items() if s in roles})
    return RoleAssignment(roles, confidence, "cues")
