with

source as (
    select * from {{ source('chargebacks', 'chargebacks') }}
    where _dlt_load_id in ({{ completed_loads('chargebacks') }})
),

typed as (
    select
        ---------- ids
        {{ safe_to_integer('transaction_id') }} as transaction_id,
        ---------- text
        lower(trim(reason)) as reason,
        ---------- timestamps (utc)
        {{ safe_to_timestamp('reported_at') }} as reported_at,
        ---------- raw values kept for quarantine reasons
        cast(transaction_id as {{ dbt.type_string() }}) as raw_transaction_id,
        cast(reported_at as {{ dbt.type_string() }}) as raw_reported_at,
        ---------- lineage
        _source_file as source_file,
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id
    from source
)

select * from typed
