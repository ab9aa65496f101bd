-- stg_utterances: the utterances rows of loadable calls (committed ok and passed the quality gate).
-- text_valence is kept for customers only (the inference policy reads no one else).
-- A view over the curated Parquet: querying it needs the curated root (S3 or the directory).
-- call_date comes from the Hive partition (date=YYYY-MM-DD).
create or replace view stg_utterances as
select t.* replace (case when t.role = 'customer' then t.text_valence end as text_valence) rename (date as call_date)
from {{ source('utterances') }} as t
semi join src_manifests as m
    on m.call_id = t.call_id and m.call_date = t.date and m.loadable;
