"""The inference policy: who may have emotions inferred, per speaker and per modality.

Decided once per call, after roles and before any affect model runs; the affect stages read
only what it allows, and every decision (made or withheld) becomes an audit row naming its rule
and the consent it read. The deployment's settings (``settings.policy``) set the limits; the
call's metadata (jurisdiction, purposes, consents) can only narrow them.

Rules, in the order they are tried:

- ``role-uncertain``: the roles came from conversational cues with a confidence below
  ``policy.min_role_confidence``: any speaker may be the agent, so nobody's emotions are read.
- ``agent-no-affect``: the speaker is the agent. Emotion recognition of workers is prohibited in
  the EU (AI Act Art. 5(1)(f)); by default nothing is read about agents anywhere.
- ``agent-coaching``: the agent, where settings list the call's jurisdiction for coaching, the
  call's purposes include "coaching" and the agent consented (``consent.agent_affect``): voice and
  text affect only, for the agent's own coaching table (``coaching_affect``), never the marts. An
  agent's face is never read, not even then.
- ``not-a-customer``: a third speaker (a supervisor, a transfer, an interpreter): not read.
- ``customer-consent``: the customer, with that modality's consent (video for the face).
"""

from __future__ import annotations

from pipeline.metadata import CallMetadata
from pipeline.records import Inference, InferenceDecision, InferencePolicy, RoleAssignment
from pipeline.settings import PolicySettings
from pipeline.stages import contract
from pipeline.stages.text.roles import AGENT, CUSTOMER

INFERENCES: tuple[Inference, ...] = ("text_valence", "voice_arousal", "face_expression")
CERTAIN_ROLE_SOURCES = ("metadata", "channel_map")
# The consent each inference reads (keys of pipeline.metadata.Consent).
CONSENT_KEY: dict[Inference, str] = {"text_valence": "text_affect", "voice_arousal": "voice_affect", "face_expression": "video"}


def coaching_allowed(meta: CallMetadata, settings: PolicySettings) -> tuple[bool, str]:
    """Whether this call's agent may get affect for coaching, and the reason either way."""
    jurisdiction = meta.jurisdiction or settings.jurisdiction
    if jurisdiction not in settings.agent_coaching_jurisdictions:
        return False, f"jurisdiction {jurisdiction} is not one where settings allow agent coaching"
    if "coaching" not in meta.purposes:
        return False, "the call's purposes do not include coaching"
    if not meta.consent.agent_affect:
        return False, "the agent has not consented (consent.agent_affect=false)"
    return True, f"jurisdiction {jurisdiction}, purpose coaching, consent.agent_affect=true"


def decide(roles: RoleAssignment, meta: CallMetadata, settings: PolicySettings) -> InferencePolicy:
    """Every speaker x inference decision of one call."""
    uncertain = roles.source not in CERTAIN_ROLE_SOURCES and roles.agent_confidence < settings.min_role_confidence
    coaching, coaching_reason = coaching_allowed(meta, settings)
    decisions = []
    for speaker in sorted(roles.roles):
        role = roles.roles[speaker]
        for inference in INFERENCES:
            key = CONSENT_KEY[inference]
            given = bool(getattr(meta.consent, key))
            consent = f"consent.{key}={str(given).lower()}"
            decisions.append(_decide_one(speaker, role, inference, given, consent, uncertain, roles, coaching,
                                         coaching_reason, meta, settings))
    return InferencePolicy(tuple(decisions))


def _decide_one(speaker: str, role: str, inference: Inference, given: bool, consent: str, uncertain: bool,
                roles: RoleAssignment, coaching: bool, coaching_reason: str, meta: CallMetadata,
                settings: PolicySettings) -> InferenceDecision:
    def withheld(rule: str, reason: str, consent_read: str | None = None) -> InferenceDecision:
        return InferenceDecision(speaker, role, inference, False, rule, consent_read, reason)

    if uncertain:
        return withheld("role-uncertain", f"roles from {roles.source} with confidence {roles.agent_confidence:.2f} "
                        f"< {settings.min_role_confidence:.2f}: this speaker may be the agent")
    if role == AGENT:
        if inference == "face_expression":
            return withheld("agent-no-affect", "an agent's face is never read")
        if not coaching:
            return withheld("agent-no-affect", f"no emotion inference about agents ({coaching_reason})")
        if not given:
            return withheld("agent-coaching", f"coaching allowed, but {consent}", consent)
        return InferenceDecision(speaker, role, inference, True, "agent-coaching", f"consent.agent_affect=true; {consent}",
                                 f"for the agent's own coaching only ({coaching_reason})", "coaching")
    if role != CUSTOMER:
        return withheld("not-a-customer", f"role {role}: may be staff, not read")
    if not given:
        return withheld("customer-consent", f"the customer did not consent ({consent})", consent)
    return InferenceDecision(speaker, role, inference, True, "customer-consent", consent, f"customer, {consent}", "quality")


STAGE = contract.Stage("inference_policy", backend=contract.fixed("python"), run=decide)
