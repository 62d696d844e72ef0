{#- delete+insert on DuckDB; merge on BigQuery (no delete+insert there): the same rows either way -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='merge' if target.type == 'bigquery' else 'delete+insert',
        unique_key='event_id',
        on_schema_change='append_new_columns',
    )
}}
-- one row per distinct event (the first delivery of its id) with the first validation rule it
-- fails (null when valid); the rules: macros/cleaning/validate_events.sql.
-- Incremental by dlt load: a run decides again only the event ids delivered in loads newer than the
-- newest it holds, and the events quarantined for an unknown user (the user may have arrived
-- since), each on all of its deliveries: the same rows as a full build, from one day's rows.
with

{% if is_incremental() %}
already_validated as (
    select coalesce(max(source_load_id), '') as last_load_id
    from {{ this }}
),

event_ids_to_validate as (
    select deliveries.event_id
    from {{ ref('stg_events__events') }} as deliveries
    where deliveries.source_load_id > (select already_validated.last_load_id from already_validated)

    union distinct

    select event_id
    from {{ this }}
    where rejection_rule = 'unknown_user'
),
{% endif %}

events as (
    {{ deduplicate_events(
        where=none if not is_incremental() else
        'event_id in (select to_validate.event_id from event_ids_to_validate as to_validate)'
        ~ ' or (event_id is null and source_load_id > (select last_load_id from already_validated))'
    ) }}
),

validated as (
    {{ validate_events('events') }}
)

select * from validated
