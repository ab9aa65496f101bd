"""The inference policy: agents get no emotion inference by default, uncertain roles protect
everyone, customers per modality consent, and metadata only narrows what settings allow."""

from __future__ import annotations

import pytest

from pipeline import metadata as call_metadata
from pipeline.records import RoleAssignment
from pipeline.settings import PolicySettings
from pipeline.stages.inference_policy import INFERENCES, decide

ROLES = RoleAssignment({"SPEAKER_00": "agent", "SPEAKER_01": "customer", "SPEAKER_02": "other"}, 0.8, "cues")
COACHING_US = PolicySettings(jurisdiction="US", agent_coaching_jurisdictions=("US",))
COACHED_CALL = {"purposes": ["quality", "coaching"], "consent": {"agent_affect": True}}


def _by(policy):
    return {(d.speaker, d.inference): d for d in policy.decisions}


def test_by_default_only_the_customer_is_read_and_every_decision_names_its_rule():
    policy = decide(ROLES, call_metadata.validate({"consent": {"video": True}}), PolicySettings())
    decisions = _by(policy)
    assert len(decisions) == 3 * len(INFERENCES)
    assert policy.speakers() == {"SPEAKER_01"} and policy.speakers(audience="coaching") == set()
    for inference in INFERENCES:
        agent, customer, other = (decisions[(s, inference)] for s in ("SPEAKER_00", "SPEAKER_01", "SPEAKER_02"))
        assert (agent.allowed, agent.rule) == (False, "agent-no-affect")
        assert (other.allowed, other.rule) == (False, "not-a-customer")
        assert (customer.allowed, customer.rule, customer.audience) == (True, "customer-consent", "quality")
    assert decisions[("SPEAKER_01", "face_expression")].consent == "consent.video=true"


def test_a_customer_without_a_modalitys_consent_is_not_read_in_that_modality():
    policy = decide(ROLES, call_metadata.validate({"consent": {"voice_affect": False}}), PolicySettings())
    voice, text, face = (policy.decision("SPEAKER_01", i) for i in ("voice_arousal", "text_valence", "face_expression"))
    assert (voice.allowed, voice.rule, voice.consent) == (False, "customer-consent", "consent.voice_affect=false")
    assert text.allowed and not face.allowed  # video consent is off unless given
    assert policy.speakers("voice_arousal") == set() and policy.speakers("text_valence") == {"SPEAKER_01"}


@pytest.mark.parametrize("source, confidence, protected", [
    ("cues", 0.29, True), ("channel_cues", 0.1, True), ("cues", 0.3, False),
    ("metadata", 0.0, False), ("channel_map", 0.0, False),
])
def test_uncertain_roles_protect_every_speaker(source, confidence, protected):
    roles = RoleAssignment({"SPEAKER_00": "agent", "SPEAKER_01": "customer"}, confidence, source)
    policy = decide(roles, call_metadata.validate({}), PolicySettings(min_role_confidence=0.3))
    if protected:
        assert policy.speakers() == set()
        assert {d.rule for d in policy.decisions} == {"role-uncertain"}
        assert all("may be the agent" in d.reason for d in policy.decisions)
    else:
        assert policy.speakers() == {"SPEAKER_01"}


def test_coaching_gives_the_consenting_agent_voice_and_text_for_coaching_only_never_the_face():
    meta = call_metadata.validate({**COACHED_CALL, "consent": {"agent_affect": True, "video": True}})
    policy = decide(ROLES, meta, COACHING_US)
    assert policy.speakers(audience="coaching") == {"SPEAKER_00"}
    assert policy.speakers(audience="quality") == {"SPEAKER_01"}
    assert policy.speakers("face_expression") == {"SPEAKER_01"}
    voice = policy.decision("SPEAKER_00", "voice_arousal")
    assert (voice.rule, voice.audience) == ("agent-coaching", "coaching")
    assert voice.consent == "consent.agent_affect=true; consent.voice_affect=true"


@pytest.mark.parametrize("settings, metadata, why", [
    (PolicySettings(), COACHED_CALL, "jurisdiction EU"),  # the default deployment: never
    (PolicySettings(jurisdiction="US"), {**COACHED_CALL, "jurisdiction": "US"}, "jurisdiction US"),  # not enabled
    (COACHING_US, {**COACHED_CALL, "jurisdiction": "DE"}, "jurisdiction DE"),  # metadata narrows
    (COACHING_US, {"consent": {"agent_affect": True}}, "purposes"),
    (COACHING_US, {"purposes": ["coaching"]}, "not consented"),
])
def test_agent_affect_stays_off_unless_settings_jurisdiction_purpose_and_consent_all_allow(settings, metadata, why):
    policy = decide(ROLES, call_metadata.validate(metadata), settings)
    assert policy.speakers(audience="coaching") == set()
    voice = policy.decision("SPEAKER_00", "voice_arousal")
    assert voice.rule == "agent-no-affect" and why in voice.reason


@pytest.mark.parametrize("codes", [("DE",), ("US", "EU"), ("NO",)])
def test_settings_refuse_agent_coaching_where_the_ai_act_prohibits_it(codes):
    with pytest.raises(ValueError, match="prohibited at work"):
        PolicySettings(agent_coaching_jurisdictions=codes)


@pytest.mark.parametrize("field, value", [("jurisdiction", "Germany"), ("jurisdiction", "de"), ("purposes", ["marketing"]),
                                          ("consent", {"agent_affect": "yes"})])
def test_policy_metadata_is_held_to_the_contract(field, value):
    with pytest.raises(call_metadata.MetadataError, match=f"^metadata {field}"):
        call_metadata.validate({field: value})
