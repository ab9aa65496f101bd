-- stg_manifests: every committed call's manifest, whatever its status (src_manifests is loaded
-- by pipeline/jobs/marts.py from <curated_root>_manifests/ before the SQL runs).
create or replace view stg_manifests as
select
    call_id,
    call_date,
    status,
    reason,
    quality_passed,
    quality_failures,
    quality_suite,
    quality_checked_at,
    loadable,
    duration_s,
    pipeline_version,
    schema_version,
    settings_fingerprint,
    stage_seconds,
    created_at,
    manifest_key,
    affect_values,
    affect_values_audited,
    commit_id
from src_manifests;
