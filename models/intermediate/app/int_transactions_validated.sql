{#- delete+insert on DuckDB; merge on BigQuery (no delete+insert there): the same rows either way -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='merge' if target.type == 'bigquery' else 'delete+insert',
        unique_key='transaction_id',
        on_schema_change='append_new_columns',
        pre_hook="{{ keys_as_text(['transaction_id', 'user_id']) }}",
    )
}}
-- one row per distinct transaction (the latest version of its id) with the first validation rule it
-- fails (null when valid), a readable reason, and its amount converted to US dollars at the latest
-- rate on or before its date; the rules: macros/cleaning/validate_transactions.sql.
-- Incremental by dlt load: a run decides again only the ids of loads newer than the newest it holds,
-- the transactions quarantined for an unknown user, an unknown currency or a missing rate (a user, or
-- a currency's rates, may have arrived since),
-- and those dated on or after a rate of a newer FX load than any rate it used: the same rows as a
-- full build, from one day's rows (macros/cleaning/deduplicate.sql).
-- depends_on: {{ ref('stg_fx__rates') }} (read only by an incremental run)
{#- a table built before rate_source_load_id existed: every rate counts as new, once (without
    introspection, the credential-free BigQuery compile check, the column is taken to exist) -#}
{%- set has_rate_loads = is_incremental() and (not flags.INTROSPECT
    or 'rate_source_load_id' in adapter.get_columns_in_relation(this) | map(attribute='name') | list) %}
{%- set recheck -%}
    rejection_rule in ('unknown_user', 'unknown_currency', 'missing_fx_rate')
    or cast(created_at as date) >= (
        select min(rates.rate_date) from {{ ref('stg_fx__rates') }} as rates
        where rates.source_load_id > (
            {{ "select max(used.rate_source_load_id) from " ~ this ~ " as used" if has_rate_loads else "select ''" }}
        )
    )
{%- endset %}
with

transactions as (
    {{ deduplicate_transactions(recheck=recheck) }}
),

validated as (
    {{ validate_transactions('transactions') }}
)

select * from validated
