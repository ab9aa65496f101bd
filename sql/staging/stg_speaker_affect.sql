-- stg_speaker_affect: the speaker_affect rows of loadable calls (committed ok and passed the quality gate), customers'
-- only: the inference policy reads no one else, and a row of any other role (e.g. written under an
-- older policy) never reaches a mart.
-- A view over the curated Parquet: querying it needs the curated root (S3 or the directory).
-- call_date comes from the Hive partition (date=YYYY-MM-DD).
create or replace view stg_speaker_affect as
select t.* rename (date as call_date)
from {{ source('speaker_affect') }} as t
semi join src_manifests as m
    on m.call_id = t.call_id and m.call_date = t.date and m.loadable
where t.role = 'customer';
