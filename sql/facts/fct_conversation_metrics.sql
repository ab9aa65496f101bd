-- fct_conversation_metrics: talk time and share, pace and interruptions, one row per call and speaker.
create or replace table fct_conversation_metrics as
select
    call_id,
    call_date,
    speaker,
    role,
    talk_s,
    talk_share,
    n_turns,
    n_words,
    words_per_minute,
    interruptions_made,
    interruptions_received,
    longest_monologue_s
from stg_conversation_metrics
order by call_id, speaker;
