-- fct_utterances: the (redacted) transcript, one row per utterance, with its text valence.
create or replace table fct_utterances as
select
    call_id,
    call_date,
    utterance_id,
    speaker,
    role,
    start_s,
    end_s,
    end_s - start_s as duration_s,
    text,
    n_words,
    asr_confidence,
    text_valence
from stg_utterances
order by call_id, start_s, utterance_id;
