-- fct_stage_metrics: per call and stage: seconds, real-time factor, device, backend, model.
create or replace table fct_stage_metrics as
select
    call_id,
    call_date,
    stage,
    seconds,
    real_time_factor,
    device,
    backend,
    model_version
from stg_stage_metrics
order by call_id, stage;
