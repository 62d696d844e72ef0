-- one row per raw row of `raw_stream.events` (completed dlt loads), typed exactly as
-- stg_events__events types the batch files' rows: int_events_validated keeps the first delivery of
-- each event id over both. The consumer loads a stream message once (its id is unique here: tested).
with

source as (
    {{ stream_rows(source('stream', 'events'), source('stream', '_dlt_loads'), [
        'event_id', 'user_id', 'session_id', 'event_type', 'device_type', 'occurred_at', 'properties',
        '_stream_message_id'
    ]) }}
),

typed as (
    select
        ---------- ids
        {{ safe_to_key('event_id') }} as event_id,
        {{ safe_to_key('user_id') }} as user_id,
        {{ safe_to_key('session_id') }} as session_id,
        ---------- text
        lower(trim(event_type)) as event_type,
        lower(trim(device_type)) as device_type,
        properties,
        ---------- timestamps (utc)
        {{ safe_to_timestamp('occurred_at') }} as occurred_at,
        ---------- lineage
        'stream:' || _stream_message_id as source_batch_file,
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id,
        'stream.events' as source_table,
        _stream_message_id as source_message_id
    from source
)

select * from typed
