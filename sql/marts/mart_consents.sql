-- mart_consents: per call date and modality, the loaded calls whose customer consented and refused,
-- read from the consent each audit row records (one customer decision per call and modality).
create or replace table mart_consents as
with per_call as (
    select distinct
        call_date,
        call_id,
        regexp_extract(consent, 'consent\.([a-z_]+)=', 1) as modality,
        consent like '%=true' as given
    from fct_audit
    where role = 'customer' and inference in ('text_valence', 'voice_arousal', 'face_expression') and consent is not null
)
select
    call_date,
    modality,
    count(*) filter (where given) as calls_consented,
    count(*) filter (where not given) as calls_refused
from per_call
group by all
order by call_date, modality;
