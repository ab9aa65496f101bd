-- stg_speaker_affect_quarters: the speaker_affect_quarters rows of loadable calls, customers' only
-- (as stg_speaker_affect). Written since schema 6; older calls have none (fct_speaker_affect_quarters
-- computes theirs from the windows).
-- A view over the curated Parquet: querying it needs the curated root (S3 or the directory).
create or replace view stg_speaker_affect_quarters as
select t.* rename (date as call_date)
from {{ source('speaker_affect_quarters') }} as t
semi join src_manifests as m
    on m.call_id = t.call_id and m.call_date = t.date and m.loadable
where t.role = 'customer';
