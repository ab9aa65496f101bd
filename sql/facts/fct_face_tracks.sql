-- fct_face_tracks: one row per face track of a video call (a summary: no images, landmarks or
-- embeddings exist anywhere in the marts), with the diarized speaker it was linked to. A null
-- speaker means the lip-motion evidence was too weak to link it: never a guess.
create or replace table fct_face_tracks as
select
    call_id,
    call_date,
    track_id,
    speaker,
    role,
    speaker is not null as linked,
    link_confidence,
    link_evidence,
    first_s,
    last_s,
    last_s - first_s as on_screen_s,
    n_detections,
    n_usable,
    n_usable / n_detections as usable_share,
    rejected,
    mean_face_px,
    box_x0,
    box_y0,
    box_x1,
    box_y1,
    detector
from stg_face_tracks
order by call_id, track_id;
