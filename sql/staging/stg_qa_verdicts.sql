-- stg_qa_verdicts: one row per QA verdict in the review store, history included (a reviewer who
-- changed their mind has several). src_qa_verdicts is loaded by pipeline/jobs/marts.py from
-- <curated_root>_reviews/verdicts/ before the SQL runs; call_date is the verdict's partition.
create or replace view stg_qa_verdicts as
select
    verdict_id,
    flag_id,
    call_id,
    call_date,
    rule_version,
    reviewer,
    verdict,
    comment,
    created_at,
    verdict_key
from src_qa_verdicts;
