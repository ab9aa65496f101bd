-- fct_audit: what was inferred or withheld, on whom (speaker label, never an identity), under which
-- basis: the inference policy's rule and the consent it read (null in calls analysed before schema 5).
create or replace table fct_audit as
select
    call_id,
    call_date,
    inference,
    subject,
    role,
    performed,
    basis,
    model,
    recorded_at,
    policy_rule,
    consent
from stg_audit
order by call_id, subject, inference;
