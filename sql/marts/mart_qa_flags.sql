-- mart_qa_flags: one row per flagged segment, for QA review, strongest first (score_rank 1 = review first).
-- speaker_text: the flagged speaker's words in the span, in order; transcript: every speaker's
-- utterances that overlap the span, in order, as "role: text" lines. agent_id and queue are the
-- call's (from its metadata), so the queue can be filtered by either; snippet_key is the flag's
-- review audio under the curated root (null: none made, for want of consent or by settings).
create or replace table mart_qa_flags as
with spans as (
    select
        f.call_id,
        f.flag_id,
        string_agg(u.text, ' ' order by u.start_s, u.utterance_id) filter (where u.speaker = f.speaker) as speaker_text,
        string_agg(coalesce(u.role, u.speaker) || ': ' || u.text, chr(10) order by u.start_s, u.utterance_id) as transcript,
        count(u.utterance_id) filter (where u.speaker = f.speaker) as n_utterances
    from fct_qa_flags as f
    left join fct_utterances as u
        on u.call_id = f.call_id and u.start_s < f.end_s and u.end_s > f.start_s
    group by f.call_id, f.flag_id
)
select
    row_number() over (order by f.score desc, f.confidence desc, f.call_id, f.start_s) as score_rank,
    f.call_id,
    f.call_date,
    f.flag_id,
    f.flag_type,
    f.speaker,
    f.role,
    f.start_s,
    f.end_s,
    f.duration_s,
    f.score,
    f.confidence,
    f.mean_valence,
    f.mean_arousal,
    coalesce(s.speaker_text, '') as speaker_text,
    coalesce(s.transcript, '') as transcript,
    coalesce(s.n_utterances, 0) as n_utterances,
    f.evidence,
    f.rule_version,
    f.snippet_key,
    c.agent_id,
    c.queue
from fct_qa_flags as f
left join spans as s using (call_id, flag_id)
left join dim_calls as c on c.call_id = f.call_id and c.call_date = f.call_date
order by score_rank;
