-- stg_conversation_metrics: per-speaker conversation metrics of loadable calls.
-- A view over the curated Parquet: querying it needs the curated root (S3 or the directory).
create or replace view stg_conversation_metrics as
select t.* rename (date as call_date)
from {{ source('conversation_metrics') }} as t
semi join src_manifests as m
    on m.call_id = t.call_id and m.call_date = t.date and m.loadable;
