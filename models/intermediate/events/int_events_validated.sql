{#- a run replaces the rows of the event ids it decided again (the strategy per warehouse:
    macros/incremental_config.sql) -#}
{{
    config(
        materialized='incremental',
        on_schema_change='append_new_columns',
        pre_hook="{{ keys_as_text(['user_id']) }}",
        **incremental_by_key('event_id'),
    )
}}
-- one row per distinct event (the first delivery of its id) with the first validation rule it
-- fails (null when valid); the rules: macros/cleaning/validate_events.sql.
-- Incremental by dlt load: a run decides again only the event ids delivered in loads newer than the
-- newest it holds, and the events quarantined for an unknown user (the user may have arrived
-- since), each on all of its deliveries: the same rows as a full build, from one day's rows
-- (macros/cleaning/deduplicate.sql).
-- Only the columns a reader of the cleaned events uses (the features: user and time; the quarantine:
-- the type; the reconciliation and the next run: the lineage), not the staging view's every column:
-- writing the events is most of this model's time, and session_id, device_type and the properties
-- JSON alone were a large part of it. They stay in stg_events__events (join on source_row_id).
-- A table built with them keeps them, null for the events decided since, until a --full-refresh
-- (DuckDB cannot drop a column and change the table in one transaction: sync_all_columns fails).
{%- set columns = [
    'event_id', 'user_id', 'event_type', 'occurred_at',
    'source_batch_file', 'source_load_id', 'source_row_id', 'source_table', 'source_message_id',
] %}
with

app_users as (
    select * from {{ ref('stg_app__users') }}
),

-- the staging views are passed as relations: the deduplication reads each several times (DuckDB
-- would materialize a CTE read more than once whole)
events as (
    {{ deduplicate_events(
        [ref('stg_events__events'), ref('stg_stream__events')], recheck=events_recheck(), columns=columns
    ) }}
),

validated as (
    {{ validate_events('events', users='app_users') }}
)

select * from validated
