-- At-least-once delivery repeats about one event in a hundred: the first delivery of an event id
-- is kept (the earliest load, then the earliest batch file within it), rows_in_raw counts them all.
with

deduplicated as (
    {{ keep_one_per_key(
        source('events', 'events'), 'events',
        key='event_id',
        order_by='_dlt_load_id, _batch_file, _dlt_id'
    ) }}
),

typed as (
    select
        ---------- ids
        cast(event_id as {{ dbt.type_string() }}) as event_id,
        {{ safe_to_integer('user_id') }} as user_id,
        cast(session_id as {{ dbt.type_string() }}) as session_id,
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
        rows_in_raw
    from deduplicated
)

select * from typed
