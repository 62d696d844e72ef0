-- one row per valid transaction the online feature store starts from: those of the last 31 days and
-- reprocess_days before the newest transaction date (their windows and late rows), plus each user's
-- latest transaction before them (seconds_since_prev_txn), with the version (updated_at) it holds
{%- set lookback_days = 31 + var('reprocess_days') %}
with

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

history_start as (
    select {{ dbt.dateadd('day', -1 * lookback_days, 'max(transaction_date)') }} as history_start_date
    from transactions
),

recent_ids as (
    select transactions.transaction_id
    from transactions
    cross join history_start
    where transactions.transaction_date >= history_start.history_start_date
),

earlier as (
    select
        transactions.transaction_id,
        transactions.user_id,
        transactions.created_at
    from transactions
    cross join history_start
    where transactions.transaction_date < history_start.history_start_date
),

-- each user's latest transaction before the history (the first id among ties) by two group-bys, not a
-- window sorting every older transaction with its columns (which ran out of a small memory limit)
latest_times as (
    select
        user_id,
        max(created_at) as latest_created_at
    from earlier
    group by user_id
),

latest_ids as (
    select min(earlier.transaction_id) as transaction_id
    from earlier
    inner join latest_times
        on
            earlier.user_id = latest_times.user_id
            and earlier.created_at = latest_times.latest_created_at
    group by earlier.user_id
),

online_ids as (
    select transaction_id from recent_ids
    union all
    select transaction_id from latest_ids
),

online as (
    select
        transactions.transaction_id,
        transactions.user_id,
        transactions.created_at,
        transactions.updated_at,
        transactions.amount,
        transactions.currency,
        transactions.amount_usd,
        transactions.device_group
    from transactions
    inner join online_ids
        on transactions.transaction_id = online_ids.transaction_id
)

select * from online
