-- one row per distinct transaction with the first validation rule it fails (null when valid),
-- a readable reason, and its amount converted to US dollars at the latest rate on or before its date.
-- A table: the features, the quarantine, the monitoring and the tests all read it, so staging's
-- casts and deduplication run once per build (the rules: macros/cleaning/validate_transactions.sql).
with

transactions as (
    select * from {{ ref('stg_app__transactions') }}
),

validated as (
    {{ validate_transactions('transactions') }}
)

select * from validated
