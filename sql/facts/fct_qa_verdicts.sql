-- fct_qa_verdicts: one row per verdict on a flag these marts hold, with the flag's span, score
-- and confidence and the ISO week of the call, and which verdicts count:
--   is_latest_by_reviewer: the reviewer's current verdict on the flag (their latest);
--   is_flag_status: the latest verdict of anyone, the flag's review status.
-- A verdict joins its flag on call, flag id and rule version, so it is scored against the flag
-- the reviewer saw. Verdicts on flags not loaded here (call quarantined, or re-run under another
-- rule version) stay in the review store; `callaffect marts build` reports how many.
-- Ties in time (same microsecond) are broken by verdict_id, the same way everywhere.
create or replace table fct_qa_verdicts as
select
    v.verdict_id,
    v.flag_id,
    f.call_id,
    f.call_date,
    strftime(f.call_date, '%G-W%V') as iso_week,
    cast(date_trunc('week', f.call_date) as date) as week_start,
    v.rule_version,
    v.reviewer,
    v.verdict,
    v.comment,
    v.created_at,
    f.speaker,
    f.start_s,
    f.end_s,
    f.score,
    f.confidence,
    row_number() over (
        partition by f.call_id, v.flag_id, v.reviewer order by v.created_at desc, v.verdict_id desc
    ) = 1 as is_latest_by_reviewer,
    row_number() over (
        partition by f.call_id, v.flag_id order by v.created_at desc, v.verdict_id desc
    ) = 1 as is_flag_status
from stg_qa_verdicts as v
join fct_qa_flags as f
    on f.call_id = v.call_id and f.flag_id = v.flag_id and f.rule_version = v.rule_version
order by f.call_id, v.flag_id, v.created_at, v.verdict_id;
