-- dim_calls: one row per loaded call, with what its manifest says about how it was processed.
-- agent_id and queue come from the call's metadata (null when not given).
create or replace table dim_calls as
select
    c.call_id,
    c.call_date,
    c.duration_s,
    c.duration_s / 60.0 as duration_min,
    c.speech_s,
    c.num_speakers,
    c.language,
    c.has_video,
    c.source_uri,
    c.sha256,
    c.source_sample_rate,
    c.source_channels,
    c.processed_at,
    c.pipeline_version,
    c.settings_fingerprint,
    c.non_talk_s,
    c.overlap_s,
    c.channel_layout,
    c.agent_id,
    c.queue,
    m.schema_version,
    m.quality_suite,
    m.quality_checked_at,
    m.stage_seconds
from stg_calls as c
join stg_manifests as m on m.call_id = c.call_id and m.call_date = c.call_date
order by c.call_date, c.call_id;
