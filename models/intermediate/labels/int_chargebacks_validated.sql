-- one row per chargeback file line with the first validation rule it fails (null when valid);
-- a repeated report of the same transaction is valid but only its first report counts as a label
with

chargebacks as (
    select * from {{ ref('stg_chargebacks__chargebacks') }}
),

-- every staged transaction, valid or quarantined: a chargeback of a quarantined transaction is
-- still a report about a known transaction (read from the table, not staging's view, which would
-- deduplicate the raw transactions again)
transactions as (
    select transaction_id from {{ ref('int_transactions_validated') }}
    where transaction_id is not null
),

validated as (
    select
        chargebacks.*,
        case
            when chargebacks.transaction_id is null then 'missing_key'
            when chargebacks.reported_at is null then 'unparseable_timestamp'
            when transactions.transaction_id is null then 'unknown_transaction'
        end as rejection_rule
    from chargebacks
    left join transactions
        on chargebacks.transaction_id = transactions.transaction_id
),

explained as (
    select
        *,
        -- chr(39) is a single quote: DuckDB escapes one in a literal as '', BigQuery as \'
        case rejection_rule
            when 'missing_key' then 'transaction_id is missing'
            when 'unparseable_timestamp'
                then 'reported_at ' || chr(39) || coalesce(raw_reported_at, 'null') || chr(39) || ' is not a timestamp'
            when 'unknown_transaction'
                then 'transaction_id ' || raw_transaction_id || ' is not a known transaction'
        end as rejection_reason,
        row_number() over (
            partition by transaction_id, rejection_rule is null
            order by reported_at, source_row_id
        ) = 1 as is_first_report
    from validated
)

select * from explained
