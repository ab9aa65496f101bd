-- mart_call_quarters: one row per loaded call: how the customer's mood moved through it.
--   q1_valence .. q4_valence: the customer's valence in each quarter of the call's duration, the
--     confidence-weighted mean of the customer windows of fct_speaker_affect whose midpoint lies
--     in that quarter (null when the customer has no confident window there).
--   valence_shift: q4_valence - q1_valence (null unless both exist).
--   ended_worse: the customer ended worse than they began (valence_shift < 0).
--   turned_around: the customer began negative and the call ended better (q1_valence < 0 and
--     valence_shift > 0): calls the agent turned around.
create or replace table mart_call_quarters as
with windows as (
    select
        a.call_id,
        -- quarter 1..4 of the window's midpoint; a midpoint on a boundary opens the next quarter
        least(4, 1 + floor(4 * ((a.start_s + a.end_s) / 2) / c.duration_s))::integer as quarter,
        a.valence,
        a.confidence
    from fct_speaker_affect as a
    join dim_calls as c using (call_id)
    where a.role = 'customer' and c.duration_s > 0
),
quarters as (
    select
        call_id,
        sum(valence * confidence) filter (where quarter = 1) / nullif(sum(confidence) filter (where quarter = 1), 0) as q1_valence,
        sum(valence * confidence) filter (where quarter = 2) / nullif(sum(confidence) filter (where quarter = 2), 0) as q2_valence,
        sum(valence * confidence) filter (where quarter = 3) / nullif(sum(confidence) filter (where quarter = 3), 0) as q3_valence,
        sum(valence * confidence) filter (where quarter = 4) / nullif(sum(confidence) filter (where quarter = 4), 0) as q4_valence
    from windows
    group by call_id
)
select
    c.call_id,
    c.call_date,
    c.duration_s,
    q.q1_valence,
    q.q2_valence,
    q.q3_valence,
    q.q4_valence,
    q.q4_valence - q.q1_valence as valence_shift,
    q.q4_valence - q.q1_valence < 0 as ended_worse,
    q.q1_valence < 0 and q.q4_valence - q.q1_valence > 0 as turned_around
from dim_calls as c
left join quarters as q using (call_id)
order by c.call_date, c.call_id;
