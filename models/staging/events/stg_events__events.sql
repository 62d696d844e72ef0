with

source as (
    select * from {{ source('events', 'events') }}
    where _dlt_load_id in ({{ completed_loads('events') }})
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
        _dlt_id as source_row_id
    from source
),

ranked as (
    select
        *,
        -- at-least-once delivery: the same event id can arrive more than once
        count(*) over (partition by event_id, case when event_id is null then source_row_id end)
            as rows_in_raw,
        row_number() over (
            partition by event_id, case when event_id is null then source_row_id end
            -- the first delivery: the earliest load, then the earliest batch file within it
            order by source_load_id, source_batch_file, source_row_id
        ) as delivery_rank
    from typed
),

deduplicated as (
    select {{ star_except(["delivery_rank"]) }}
    from ranked
    where delivery_rank = 1
)

select * from deduplicated
