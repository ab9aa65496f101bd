-- fct_face_affect: facial expression per face track and window: the model's class
-- probabilities, the valence/arousal they map to (pipeline/stages/vision/expression_circumplex.py) and
-- a confidence. Probabilities of an expression, not of a feeling: weight by confidence.
create or replace table fct_face_affect as
select
    call_id,
    call_date,
    track_id,
    speaker,
    role,
    start_s,
    end_s,
    n_frames,
    p_angry,
    p_disgust,
    p_fear,
    p_happy,
    p_sad,
    p_surprise,
    p_neutral,
    valence,
    arousal,
    confidence,
    model
from stg_face_affect
order by call_id, track_id, model, start_s;
