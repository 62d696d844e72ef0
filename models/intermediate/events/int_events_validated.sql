{#- delete+insert on DuckDB; merge on BigQuery (no delete+insert there): the same rows either way -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='merge' if target.type == 'bigquery' else 'delete+insert',
        unique_key='event_id',
        on_schema_change='append_new_columns',
        pre_hook="{{ keys_as_text(['user_id']) }}",
    )
}}
-- one row per distinct event (the first delivery of its id) with the first validation rule it
-- fails (null when valid); the rules: macros/cleaning/validate_events.sql.
-- Incremental by dlt load: a run decides again only the event ids delivered in loads newer than the
-- newest it holds, and the events quarantined for an unknown user (the user may have arrived
-- since), each on all of its deliveries: the same rows as a full build, from one day's rows
-- (macros/cleaning/deduplicate.sql).
with

events as (
    {{ deduplicate_events(recheck="rejection_rule = 'unknown_user'") }}
),

validated as (
    {{ validate_events('events') }}
)

select * from validated
