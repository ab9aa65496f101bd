-- fct_qa_flags: flagged segments (e.g. customer frustration) with score and evidence.
create or replace table fct_qa_flags as
select
    call_id,
    call_date,
    flag_id,
    flag_type,
    speaker,
    role,
    start_s,
    end_s,
    end_s - start_s as duration_s,
    score,
    confidence,
    mean_valence,
    mean_arousal,
    evidence,
    rule_version
from stg_qa_flags
order by call_id, start_s, flag_id;
