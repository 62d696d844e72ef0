-- At-least-once delivery repeats about one event in a hundred. The deduplication ranks only the
-- deliveries of repeated event ids, found by a group-by (which DuckDB spills to disk): a window
-- over every delivery of 50M events ran out of 12 GB of memory.
with

source as (
    select * from {{ source('events', 'events') }}
    where _dlt_load_id in ({{ completed_loads('events') }})
),

redelivered as (
    select
        event_id,
        count(*) as rows_in_raw
    from source
    where event_id is not null
    group by event_id
    having count(*) > 1
),

first_deliveries as (
    select source_row_id
    from (
        select
            source._dlt_id as source_row_id,
            row_number() over (
                partition by source.event_id
                -- the first delivery: the earliest load, then the earliest batch file within it
                order by source._dlt_load_id, source._batch_file, source._dlt_id
            ) as delivery_rank
        from source
        inner join redelivered
            on source.event_id = redelivered.event_id
    ) as ranked
    where delivery_rank = 1
),

deduplicated as (
    select
        source.*,
        coalesce(redelivered.rows_in_raw, 1) as rows_in_raw
    from source
    left join redelivered
        on source.event_id = redelivered.event_id
    -- rows without an event id are never collapsed together: each stays for quarantine
    where
        redelivered.event_id is null
        or source._dlt_id in (select first_deliveries.source_row_id from first_deliveries)
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
