-- one row per delivery of an event in a completed dlt load, typed. At-least-once delivery repeats
-- about one event in a hundred: int_events_validated keeps the first delivery of each event id,
-- incrementally (only the ids of new loads are looked at again).
-- Keys are text (safe_to_key), also where dlt kept a value in a variant column (raw_text).
{%- set raw_events = source('events', 'events') %}
with

source as (
    select * from {{ raw_events }}
    where _dlt_load_id in ({{ completed_loads(source('events', '_dlt_loads')) }})
),

typed as (
    select
        ---------- ids
        {{ safe_to_key(raw_text(raw_events, 'event_id')) }} as event_id,
        {{ safe_to_key(raw_text(raw_events, 'user_id')) }} as user_id,
        {{ safe_to_key(raw_text(raw_events, 'session_id')) }} as session_id,
        ---------- text
        lower(trim(event_type)) as event_type,
        lower(trim(device_type)) as device_type,
        properties,
        ---------- timestamps (utc)
        {{ safe_to_timestamp('occurred_at') }} as occurred_at,
        ---------- lineage
        _batch_file as source_batch_file,
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id,
        'events.events' as source_table,
        cast(null as {{ dbt.type_string() }}) as source_message_id
    from source
)

select * from typed
