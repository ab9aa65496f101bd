-- fct_speaker_turns: who spoke when (diarization), one row per turn.
create or replace table fct_speaker_turns as
select
    call_id,
    call_date,
    speaker,
    role,
    start_s,
    end_s,
    end_s - start_s as duration_s
from stg_speaker_turns
order by call_id, start_s, speaker;
