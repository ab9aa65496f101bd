-- stg_calls: the calls rows of loadable calls (committed ok and passed the quality gate).
-- A view over the curated Parquet: querying it needs the curated root (S3 or the directory).
-- calls carries call_date itself; the partition's date is dropped.
create or replace view stg_calls as
select t.* exclude (date)
from {{ source('calls') }} as t
semi join src_manifests as m
    on m.call_id = t.call_id and m.call_date = t.date and m.loadable;
