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
),

ranked as (
    select
        *,
        -- rows without a usable key are never collapsed together: each stays for quarantine
        count(*) over (partition by transaction_id, case when transaction_id is null then source_row_id end)
            as rows_in_raw,
        row_number() over (
            partition by transaction_id, case when transaction_id is null then source_row_id end
            order by updated_at desc nulls last, source_load_id desc, source_row_id asc
        ) as version_rank
    from typed
),

deduplicated as (
    select {{ star_except(["version_rank"]) }}
    from ranked
    where version_rank = 1
)

select * from deduplicated
