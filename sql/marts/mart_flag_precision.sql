-- mart_flag_precision: one row per ISO week (of the call) and rule version with flags: how the
-- flag rule fares against the QA verdicts (fct_qa_verdicts). With no verdicts yet every week
-- still has its row, with zero counts and null measures.
--   flags: flags produced; flags_reviewed: flags with any verdict, counted by review status
--     (the latest verdict of anyone) as flags_confirmed / flags_dismissed / flags_unsure.
--   precision: flags_confirmed / (flags_confirmed + flags_dismissed); unsure flags are left out.
--   brier_score: mean of (score - outcome)^2 over each reviewer's latest verdict per flag, outcome
--     1 for confirmed and 0 for dismissed (unsure left out; judgements_scored counts them). 0 is
--     perfect; a constant score of 0.5 scores 0.25.
--   reviewer_agreement: of the flags whose latest verdicts come from two or more reviewers
--     (flags_multi_reviewed), the share where all gave the same verdict (unsure is a verdict).
create or replace table mart_flag_precision as
with flags as (
    select
        strftime(call_date, '%G-W%V') as iso_week,
        cast(date_trunc('week', call_date) as date) as week_start,
        rule_version,
        count(*) as flags
    from fct_qa_flags
    group by all
),
statuses as (
    select
        iso_week,
        rule_version,
        count(*) as flags_reviewed,
        count(*) filter (where verdict = 'confirmed') as flags_confirmed,
        count(*) filter (where verdict = 'dismissed') as flags_dismissed,
        count(*) filter (where verdict = 'unsure') as flags_unsure
    from fct_qa_verdicts
    where is_flag_status
    group by all
),
scored as (
    select
        iso_week,
        rule_version,
        count(*) as judgements_scored,
        avg(power(score - case verdict when 'confirmed' then 1.0 else 0.0 end, 2)) as brier_score
    from fct_qa_verdicts
    where is_latest_by_reviewer and verdict in ('confirmed', 'dismissed')
    group by all
),
per_flag as (
    select iso_week, rule_version, call_id, flag_id, count(*) as reviewers, count(distinct verdict) as verdicts_given
    from fct_qa_verdicts
    where is_latest_by_reviewer
    group by all
),
agreement as (
    select
        iso_week,
        rule_version,
        count(*) as flags_multi_reviewed,
        count(*) filter (where verdicts_given = 1) as flags_agreed
    from per_flag
    where reviewers >= 2
    group by all
)
select
    f.iso_week,
    f.week_start,
    f.rule_version,
    f.flags,
    coalesce(s.flags_reviewed, 0) as flags_reviewed,
    coalesce(s.flags_confirmed, 0) as flags_confirmed,
    coalesce(s.flags_dismissed, 0) as flags_dismissed,
    coalesce(s.flags_unsure, 0) as flags_unsure,
    s.flags_confirmed / nullif(s.flags_confirmed + s.flags_dismissed, 0) as precision,
    coalesce(b.judgements_scored, 0) as judgements_scored,
    b.brier_score,
    coalesce(a.flags_multi_reviewed, 0) as flags_multi_reviewed,
    coalesce(a.flags_agreed, 0) as flags_agreed,
    a.flags_agreed / nullif(a.flags_multi_reviewed, 0) as reviewer_agreement
from flags as f
left join statuses as s using (iso_week, rule_version)
left join scored as b using (iso_week, rule_version)
left join agreement as a using (iso_week, rule_version)
order by f.week_start, f.rule_version;
