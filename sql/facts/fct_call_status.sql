-- fct_call_status: every committed call, loaded or not, with its status and the reason why not.
create or replace table fct_call_status as
select
    call_id,
    call_date,
    status,
    reason,
    quality_passed,
    quality_failures,
    quality_suite,
    loadable as loaded,
    duration_s,
    created_at
from stg_manifests
order by call_date, call_id;
