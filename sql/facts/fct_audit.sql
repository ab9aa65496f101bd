-- fct_audit: what was inferred, on whom (speaker label, never an identity), under which basis.
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
    recorded_at
from stg_audit
order by call_id, subject, inference;
