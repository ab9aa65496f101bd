-- fct_speaker_affect_quarters: each customer's fused affect per quarter of the call (quarter 1..4
-- by window midpoint; a midpoint on a boundary opens the next quarter), one row per call, speaker
-- and quarter with windows:
--   weight_s: the sum of confidence x window length; valence, arousal: means weighted by it (null
--   when weight_s is 0). Average calls or days with weight_s as the weight.
-- Kept as long as the call's aggregates (retention.aggregate_max_age_days), after retention deleted
-- the windows (affect_window_max_age_days): the marts' daily and per-quarter affect read this, not
-- fct_speaker_affect, so they outlive the windows. A call written before schema 6 has no quarter
-- rows: its rows are computed here from its windows, the same sums.
create or replace table fct_speaker_affect_quarters as
with written as (
    select call_id, call_date, speaker, role, quarter, windows, weight_s, valence, arousal
    from stg_speaker_affect_quarters
),
from_windows as (
    select
        a.call_id,
        a.call_date,
        a.speaker,
        a.role,
        least(4, 1 + floor(4 * ((a.start_s + a.end_s) / 2) / c.duration_s))::integer as quarter,
        count(*)::integer as windows,
        sum(a.confidence * a.duration_s) as weight_s,
        sum(a.valence * a.confidence * a.duration_s) / nullif(sum(a.confidence * a.duration_s), 0) as valence,
        sum(a.arousal * a.confidence * a.duration_s) / nullif(sum(a.confidence * a.duration_s), 0) as arousal
    from fct_speaker_affect as a
    join dim_calls as c using (call_id)
    where c.duration_s > 0
        and a.call_id not in (select call_id from written)
    group by all
)
select * from written
union all
select * from from_windows
order by call_id, speaker, quarter;
