-- one row per user per day with at least one valid transaction: the user's features as of the
-- end of that day (windows of whole days ending at midnight after the day, so exact durations)
with

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

users as (
    select * from {{ ref('int_users_cleaned') }}
),

daily as (
    select
        user_id,
        transaction_date as feature_date,
        {{ day_number('transaction_date') }} as day_number,
        count(*) as txn_count,
        sum(amount_usd) as amount_sum,
        max(created_at) as last_transaction_at
    from transactions
    group by 1, 2, 3
),

windowed as (
    select
        user_id,
        feature_date,
        txn_count as user_txn_count_1d,
        sum(txn_count) over (
            partition by user_id order by day_number range between 6 preceding and current row
        ) as user_txn_count_7d,
        sum(txn_count) over (
            partition by user_id order by day_number range between 29 preceding and current row
        ) as user_txn_count_30d,
        sum(amount_sum) over (
            partition by user_id order by day_number range between 6 preceding and current row
        ) as user_amount_sum_7d,
        sum(amount_sum) over (
            partition by user_id order by day_number range between 29 preceding and current row
        ) as user_amount_sum_30d,
        last_transaction_at
    from daily
),

features as (
    select
        windowed.user_id,
        windowed.feature_date,
        windowed.user_txn_count_1d,
        windowed.user_txn_count_7d,
        windowed.user_txn_count_30d,
        windowed.user_amount_sum_7d,
        windowed.user_amount_sum_30d,
        windowed.user_amount_sum_30d / nullif(windowed.user_txn_count_30d, 0) as user_amount_mean_30d,
        windowed.last_transaction_at,
        (
            {{ day_number('windowed.feature_date') }} - {{ day_number('cast(users.signup_at as date)') }}
        ) as user_tenure_days,
        users.country_group
    from windowed
    inner join users
        on windowed.user_id = users.user_id
)

select * from features
