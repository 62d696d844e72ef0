{#- a run replaces the rows of the transaction ids it decided again (the strategy per warehouse:
    macros/incremental_config.sql) -#}
{{
    config(
        materialized='incremental',
        on_schema_change='append_new_columns',
        pre_hook="{{ keys_as_text(['transaction_id', 'user_id']) }}",
        **incremental_by_key('transaction_id'),
    )
}}
-- one row per distinct transaction (the latest version of its id) with the first validation rule it
-- fails (null when valid), a readable reason, and its amount converted to US dollars at the latest
-- rate on or before its date; the rules: macros/cleaning/validate_transactions.sql.
-- Incremental by dlt load: a run decides again only the ids of loads newer than the newest it holds,
-- the transactions quarantined for an unknown user, an unknown currency or a missing rate (a user, or
-- a currency's rates, may have arrived since),
-- and those dated on or after a rate of a newer FX load than any rate it used: the same rows as a
-- full build, from one day's rows (macros/cleaning/deduplicate.sql; the rows decided again:
-- transactions_recheck, shared with the speed layer of realtime_transaction_features).
-- Its inputs: the import CTEs below, and the relations passed to the macros where their SQL reads one
-- several times (DuckDB would materialize such a CTE whole): the staging views, the FX rates by range,
-- and the staged FX rates an incremental run's recheck reads.
-- depends_on: {{ ref('stg_fx__rates') }} (read only by an incremental run)
with

app_users as (
    select * from {{ ref('stg_app__users') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

transactions as (
    {{ deduplicate_transactions(
        [ref('stg_app__transactions'), ref('stg_stream__transactions')],
        recheck=transactions_recheck(this, ref('stg_fx__rates')) if is_incremental() else none
    ) }}
),

validated as (
    {{ validate_transactions(
        'transactions', users='app_users', currencies='currencies', rates=ref('int_fx_rates_ranged')
    ) }}
)

select * from validated
