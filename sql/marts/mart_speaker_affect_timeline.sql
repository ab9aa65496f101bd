-- mart_speaker_affect_timeline: each speaker's valence/arousal over a call, window by window,
-- smoothed over the neighbouring windows, against the speaker's own call mean, and whether the
-- window lies in a flagged segment. For plots and drill-down from mart_qa_flags.
create or replace table mart_speaker_affect_timeline as
select
    a.call_id,
    a.call_date,
    a.speaker,
    a.role,
    a.start_s,
    a.end_s,
    (a.start_s + a.end_s) / 2 as mid_s,
    a.valence,
    a.arousal,
    a.confidence,
    a.modalities,
    a.text_valence,
    a.voice_arousal,
    a.face_valence,  -- null unless a face track was linked to this speaker (video calls)
    a.face_arousal,
    avg(a.valence) over neighbours as valence_smoothed,
    avg(a.arousal) over neighbours as arousal_smoothed,
    a.valence - avg(a.valence) over speaker_call as valence_vs_speaker_mean,
    a.arousal - avg(a.arousal) over speaker_call as arousal_vs_speaker_mean,
    exists (
        select 1 from fct_qa_flags as f
        where f.call_id = a.call_id and f.speaker = a.speaker and f.start_s < a.end_s and f.end_s > a.start_s
    ) as in_flag
from fct_speaker_affect as a
window
    neighbours as (partition by a.call_id, a.speaker order by a.start_s rows between 1 preceding and 1 following),
    speaker_call as (partition by a.call_id, a.speaker)
order by a.call_id, a.speaker, a.start_s;
