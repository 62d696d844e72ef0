{#- delete+insert on DuckDB; merge on BigQuery (no delete+insert there): the same rows either way -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='merge' if target.type == 'bigquery' else 'delete+insert',
        unique_key='transaction_id',
        on_schema_change='append_new_columns',
    )
}}
-- one row per distinct transaction (the latest version of its id) with the first validation rule it
-- fails (null when valid), a readable reason, and its amount converted to US dollars at the latest
-- rate on or before its date; the rules: macros/cleaning/validate_transactions.sql.
-- Incremental by dlt load: a run decides again only the ids of loads newer than the newest it holds,
-- the transactions quarantined for an unknown user or a missing rate (either may have arrived since),
-- and those dated on or after a rate loaded since: the same rows as a full build, from one day's rows.
-- depends_on: {{ ref('stg_fx__rates') }} (read only by an incremental run)
with

{% if is_incremental() %}
already_validated as (
    select coalesce(max(source_load_id), '') as last_load_id
    from {{ this }}
),

-- the earliest date a rate loaded since applies from: no transaction before it changes rate
new_rates as (
    select min(rates.rate_date) as first_rate_date
    from {{ ref('stg_fx__rates') }} as rates
    where rates.source_load_id > (select already_validated.last_load_id from already_validated)
),

transaction_ids_to_validate as (
    select versions.transaction_id
    from {{ ref('stg_app__transactions') }} as versions
    where versions.source_load_id > (select already_validated.last_load_id from already_validated)

    union distinct

    select transaction_id
    from {{ this }}
    where
        rejection_rule in ('unknown_user', 'missing_fx_rate')
        or cast(created_at as date) >= (select new_rates.first_rate_date from new_rates)
),
{% endif %}

transactions as (
    {{ deduplicate_transactions(
        where=none if not is_incremental() else
        'transaction_id in (select to_validate.transaction_id from transaction_ids_to_validate as to_validate)'
        ~ ' or (transaction_id is null and source_load_id > (select last_load_id from already_validated))'
    ) }}
),

validated as (
    {{ validate_transactions('transactions') }}
)

select * from validated
