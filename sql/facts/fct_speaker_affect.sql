-- fct_speaker_affect: fused valence/arousal per speaker per window, with its confidence.
-- Estimates, not verdicts: weight by confidence when aggregating.
create or replace table fct_speaker_affect as
select
    call_id,
    call_date,
    speaker,
    role,
    start_s,
    end_s,
    end_s - start_s as duration_s,
    valence,
    arousal,
    confidence,
    text_valence,
    voice_valence,
    voice_arousal,
    face_valence,
    face_arousal,
    modalities
from stg_speaker_affect
order by call_id, speaker, start_s;
