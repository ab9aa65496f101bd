-- mart_inference_decisions: every emotion inference made or withheld, per call date, role,
-- inference and the inference policy's rule that decided it (README "Lawful by default").
-- role 'unlinked face' is a face track nobody could link to a speaker: never read.
-- Feeds `callaffect governance report` and the nightly report's governance section.
create or replace table mart_inference_decisions as
select
    call_date,
    coalesce(role, 'unlinked face') as role,
    inference,
    coalesce(policy_rule, 'unrecorded') as policy_rule,
    performed,
    count(*) as decisions,
    count(distinct call_id) as calls
from fct_audit
where inference in ('text_valence', 'voice_arousal', 'face_expression')
group by all
order by call_date, role, inference, policy_rule, performed;
