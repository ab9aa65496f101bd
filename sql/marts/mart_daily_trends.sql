-- mart_daily_trends: one row per call date.
-- customer_valence / customer_arousal: the customers' windows averaged with weight
-- confidence x window length, so confident, longer evidence counts more (from
-- fct_speaker_affect_quarters: still there after retention deleted the windows).
-- frustrated_call_share: share of the day's calls with at least one customer frustration flag.
-- flags_per_speech_hour: all flags per hour of detected speech (null when there was none).
-- No agent columns: no emotion is inferred about agents (README "Lawful by default").
create or replace table mart_daily_trends as
with calls as (
    select call_date, count(*) as calls, sum(duration_s) as duration_s, sum(speech_s) as speech_s
    from dim_calls
    group by call_date
),
flags as (
    select
        call_date,
        count(*) as flags,
        count(distinct call_id) filter (where role = 'customer' and flag_type like '%frustration%') as frustrated_calls
    from fct_qa_flags
    group by call_date
),
affect as (
    -- from the per-quarter sums, which outlive the windows (fct_speaker_affect_quarters)
    select
        call_date,
        sum(valence * weight_s) / nullif(sum(weight_s), 0) as customer_valence,
        sum(arousal * weight_s) / nullif(sum(weight_s), 0) as customer_arousal
    from fct_speaker_affect_quarters
    where role = 'customer'
    group by call_date
)
select
    c.call_date,
    c.calls,
    c.duration_s / 60.0 as minutes,
    c.speech_s / 60.0 as speech_minutes,
    coalesce(f.frustrated_calls, 0) as frustrated_calls,
    coalesce(f.frustrated_calls, 0) / c.calls as frustrated_call_share,
    a.customer_valence,
    a.customer_arousal,
    coalesce(f.flags, 0) as flags,
    coalesce(f.flags, 0) / nullif(c.speech_s / 3600.0, 0) as flags_per_speech_hour
from calls as c
left join flags as f using (call_date)
left join affect as a using (call_date)
order by c.call_date;
