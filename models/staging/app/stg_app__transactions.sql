-- dlt merges on transaction_id, so few ids have more than one raw row. The deduplication ranks
-- only the rows of those ids, found by a group-by (which DuckDB spills to disk): a window over every
-- raw row ran out of 2 GB of memory at 10M transactions.
with

source as (
    select * from {{ source('app', 'transactions') }}
    where _dlt_load_id in ({{ completed_loads('app') }})
),

repeated_keys as (
    select
        {{ safe_to_integer('transaction_id') }} as transaction_id,
        count(*) as rows_in_raw
    from source
    where {{ safe_to_integer('transaction_id') }} is not null
    group by {{ safe_to_integer('transaction_id') }}
    having count(*) > 1
),

latest_versions as (
    select source_row_id
    from (
        select
            source._dlt_id as source_row_id,
            row_number() over (
                partition by repeated_keys.transaction_id
                order by
                    {{ safe_to_timestamp('source.updated_at') }} desc nulls last,
                    source._dlt_load_id desc,
                    source._dlt_id asc
            ) as version_rank
        from source
        inner join repeated_keys
            on {{ safe_to_integer('source.transaction_id') }} = repeated_keys.transaction_id
    ) as ranked
    where version_rank = 1
),

-- rows without a usable key are never collapsed together: each stays for quarantine
deduplicated as (
    select
        source.*,
        coalesce(repeated_keys.rows_in_raw, 1) as rows_in_raw
    from source
    left join repeated_keys
        on {{ safe_to_integer('source.transaction_id') }} = repeated_keys.transaction_id
    where
        repeated_keys.transaction_id is null
        or source._dlt_id in (select latest_versions.source_row_id from latest_versions)
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
        _dlt_id as source_row_id,
        ---------- deduplication
        rows_in_raw
    from deduplicated
)

select * from typed
