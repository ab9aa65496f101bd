-- mart_pipeline_health: per call date and stage: how many calls, seconds, real-time factor; and
-- per date how many calls were loaded, quarantined (and how many of those by the quality gate)
-- or still wait for the gate. A date with no loaded call has one row with stage null.
create or replace table mart_pipeline_health as
with days as (
    select
        call_date,
        count(*) as calls_committed,
        count(*) filter (where loaded) as calls_loaded,
        count(*) filter (where status = 'quarantined') as calls_quarantined,
        count(*) filter (where status = 'quarantined' and reason like 'quality gate:%') as calls_failed_gate,
        count(*) filter (where status = 'ok' and quality_passed is null) as calls_pending_gate
    from fct_call_status
    group by call_date
),
stages as (
    select
        call_date,
        stage,
        count(*) as stage_calls,
        sum(seconds) as seconds,
        avg(seconds) as mean_seconds,
        avg(real_time_factor) as mean_rtf,
        quantile_cont(real_time_factor, 0.95) as p95_rtf,
        max(real_time_factor) as max_rtf
    from fct_stage_metrics
    group by call_date, stage
)
select d.*, s.stage, s.stage_calls, s.seconds, s.mean_seconds, s.mean_rtf, s.p95_rtf, s.max_rtf
from days as d
left join stages as s using (call_date)
order by d.call_date, s.stage;
