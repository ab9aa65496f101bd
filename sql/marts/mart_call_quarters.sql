-- mart_call_quarters: one row per loaded call: how the customer's mood moved through it.
--   q1_valence .. q4_valence: the customer's valence in each quarter of the call's duration, the
--     mean of the customer windows whose midpoint lies in that quarter, weighted by confidence x
--     window length as in mart_daily_trends (null when the customer has no confident window
--     there); from fct_speaker_affect_quarters, so it outlives the windows.
--   valence_shift: q4_valence - q1_valence (null unless both exist).
--   ended_worse: the customer ended worse than they began (valence_shift < 0).
--   turned_around: the customer began negative and the call ended better (q1_valence < 0 and
--     valence_shift > 0): calls the agent turned around.
create or replace table mart_call_quarters as
with quarters as (
    select
        call_id,
        sum(valence * weight_s) filter (where quarter = 1) / nullif(sum(weight_s) filter (where quarter = 1), 0) as q1_valence,
        sum(valence * weight_s) filter (where quarter = 2) / nullif(sum(weight_s) filter (where quarter = 2), 0) as q2_valence,
        sum(valence * weight_s) filter (where quarter = 3) / nullif(sum(weight_s) filter (where quarter = 3), 0) as q3_valence,
        sum(valence * weight_s) filter (where quarter = 4) / nullif(sum(weight_s) filter (where quarter = 4), 0) as q4_valence
    from fct_speaker_affect_quarters
    where role = 'customer'
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
