-- stg_face_tracks: the face_tracks rows of loadable calls (committed ok and passed the quality gate).
-- A view over the curated Parquet: querying it needs the curated root (S3 or the directory).
-- call_date comes from the Hive partition (date=YYYY-MM-DD).
create or replace view stg_face_tracks as
select t.* rename (date as call_date)
from {{ source('face_tracks') }} as t
semi join src_manifests as m
    on m.call_id = t.call_id and m.call_date = t.date and m.loadable;
