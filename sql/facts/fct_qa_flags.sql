-- fct_qa_flags: one row per flagged segment (e.g. customer frustration) with score and evidence.
-- snippet_key: the flag's review audio under the curated root, null when none was made.
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
    rule_version,
    snippet_key
from stg_qa_flags
order by call_id, start_s, flag_id;
