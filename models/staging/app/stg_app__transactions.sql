-- one row per raw row of a completed dlt load, typed. dlt merges on transaction_id, so an id has
-- one raw row but for rows without a usable id; int_transactions_validated keeps the latest version
-- of each id all the same (the same deduplication as the other tables), incrementally.
with

source as (
    select * from {{ source('app', 'transactions') }}
    where _dlt_load_id in ({{ completed_loads('app') }})
),

typed as (
    select
        ---------- ids
        {{ safe_to_integer('transaction_id') }} as transaction_id,
        {{ safe_to_integer('user_id') }} as user_id,
        ---------- numerics
        {{ safe_to_decimal('amount') }} as amount,
        ---------- text
        upper(trim(currency)) as currency,
        lower(trim(status)) as status,
        lower(trim(device_type)) as device_type,
        ---------- timestamps (utc)
        {{ safe_to_timestamp('created_at') }} as created_at,
        {{ safe_to_timestamp('updated_at') }} as updated_at,
        ---------- raw values kept for quarantine reasons
        cast(amount as {{ dbt.type_string() }}) as raw_amount,
        cast(created_at as {{ dbt.type_string() }}) as raw_created_at,
        ---------- flags: the source gave a value the safe cast could not read (it became null)
        amount is not null and {{ safe_to_decimal('amount') }} is null as is_amount_unparseable,
        created_at is not null and {{ safe_to_timestamp('created_at') }} is null as is_created_at_unparseable,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id
    from source
)

select * from typed
