-- one row per staged transaction row of the app and of the real-time stream: the day it lands on, and
-- the earliest day whose history windows it changes (null when it changes none). A transaction new, or
-- changed in what the features read (user, time, amount, currency, device), changes its day and the
-- day the windows hold it on (the earlier). A change of status alone (most updates) changes no
-- feature, so it rebuilds no weeks of windows. The version compared with is the validated one when
-- the windows were built after it: a failed build may have validated the change without building the
-- windows. The pipeline reads this for the rows of its new loads only (filtered by source_load_id,
-- which DuckDB applies at the staging scan): pipeline/warehouse/monitoring.py first_days.
with

app_transactions as (
    select * from {{ ref('stg_app__transactions') }}
),

stream_transactions as (
    select * from {{ ref('stg_stream__transactions') }}
),

validated as (
    select * from {{ ref('int_transactions_validated') }}
),

-- read twice (once for the newest load it was built from), so imported twice: DuckDB would
-- materialize a CTE read twice whole
windowed as (
    select * from {{ ref('int_transactions_windowed') }}
),

windowed_loads as (
    select max(source_load_id) as newest_load_id
    from {{ ref('int_transactions_windowed') }}
),

loaded as (
    select
        'app' as source_name,
        source_table,
        source_load_id,
        source_row_id,
        transaction_id,
        user_id,
        created_at,
        amount,
        currency,
        device_type
    from app_transactions
    union all
    select
        'stream' as source_name,
        source_table,
        source_load_id,
        source_row_id,
        transaction_id,
        user_id,
        created_at,
        amount,
        currency,
        device_type
    from stream_transactions
),

validated_before_windows as (
    select
        validated.transaction_id,
        validated.user_id,
        validated.created_at,
        validated.amount,
        validated.currency,
        validated.device_type
    from validated
    where validated.source_load_id <= (select windowed_loads.newest_load_id from windowed_loads)
),

compared as (
    select
        loaded.source_name,
        loaded.source_table,
        loaded.source_load_id,
        loaded.source_row_id,
        loaded.transaction_id,
        cast(loaded.created_at as date) as loaded_date,
        windowed.transaction_date as windowed_date,
        (
            built.transaction_id is null
            or loaded.user_id is distinct from built.user_id
            or loaded.created_at is distinct from built.created_at
            or loaded.amount is distinct from built.amount
            or loaded.currency is distinct from built.currency
            or loaded.device_type is distinct from built.device_type
        ) as changes_features
    from loaded
    left join validated_before_windows as built
        on loaded.transaction_id = built.transaction_id
    left join windowed
        on loaded.transaction_id = windowed.transaction_id
),

planned as (
    select
        source_name,
        source_table,
        source_load_id,
        source_row_id,
        transaction_id,
        loaded_date,
        changes_features,
        case
            when changes_features
                then least(coalesce(loaded_date, windowed_date), coalesce(windowed_date, loaded_date))
        end as changed_date
    from compared
)

select * from planned
