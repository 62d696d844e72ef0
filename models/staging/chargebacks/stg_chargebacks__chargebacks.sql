-- the key is text (safe_to_key), also where dlt kept a value in a variant column (raw_text)
{%- set raw_chargebacks = source('chargebacks', 'chargebacks') %}
with

source as (
    select * from {{ raw_chargebacks }}
    where _dlt_load_id in ({{ completed_loads(source('chargebacks', '_dlt_loads')) }})
),

typed as (
    select
        ---------- ids
        {{ safe_to_key(raw_text(raw_chargebacks, 'transaction_id')) }} as transaction_id,
        ---------- text
        lower(trim(reason)) as reason,
        ---------- timestamps (utc)
        {{ safe_to_timestamp('reported_at') }} as reported_at,
        ---------- raw values kept for quarantine reasons
        {{ raw_text(raw_chargebacks, 'transaction_id') }} as raw_transaction_id,
        cast(reported_at as {{ dbt.type_string() }}) as raw_reported_at,
        ---------- lineage
        _source_file as source_file,
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id
    from source
)

select * from typed
