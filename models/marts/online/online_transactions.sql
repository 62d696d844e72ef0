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

recent as (
    select transactions.*
    from transactions
    cross join history_start
    where transactions.transaction_date >= history_start.history_start_date
),

latest_before as (
    select
        transactions.*,
        row_number() over (
            partition by transactions.user_id order by transactions.created_at desc, transactions.transaction_id asc
        ) as recency
    from transactions
    cross join history_start
    where transactions.transaction_date < history_start.history_start_date
),

online as (
    select
        transaction_id,
        user_id,
        created_at,
        updated_at,
        amount,
        currency,
        amount_usd,
        device_group
    from recent

    union all

    select
        transaction_id,
        user_id,
        created_at,
        updated_at,
        amount,
        currency,
        amount_usd,
        device_group
    from latest_before
    where recency = 1
)

select * from online
