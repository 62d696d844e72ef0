-- one row per valid transaction: every feature computed only from what was known strictly before
-- the transaction's timestamp (range windows over exact durations, ties excluded), plus the label
with

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

events as (
    select * from {{ ref('int_events_validated') }}
    where rejection_rule is null
),

users as (
    select * from {{ ref('int_users_cleaned') }}
),

users_history as (
    select * from {{ ref('users_snapshot') }}
),

labels as (
    select * from {{ ref('int_transaction_labels') }}
),

parameters as (
    select * from {{ ref('preprocessing_parameters') }}
),

---------- one time-ordered stream per user: transactions and events together
activity as (
    select
        user_id,
        transaction_id,
        {{ epoch_microseconds('created_at') }} as at_us,
        1 as is_transaction,
        0 as is_event,
        amount_usd
    from transactions

    union all

    select
        user_id,
        cast(null as {{ dbt.type_bigint() }}) as transaction_id,
        {{ epoch_microseconds('occurred_at') }} as at_us,
        0 as is_transaction,
        1 as is_event,
        cast(null as {{ dbt.type_numeric() }}) as amount_usd
    from events
),

---------- windows [t - N days, t): "1 preceding" excludes rows at the same microsecond (ties)
windowed as (
    select
        transaction_id,
        sum(is_transaction) over (
            partition by user_id order by at_us
            range between {{ days_in_microseconds(1) }} preceding and 1 preceding
        ) as user_txn_count_1d,
        sum(is_transaction) over (
            partition by user_id order by at_us
            range between {{ days_in_microseconds(7) }} preceding and 1 preceding
        ) as user_txn_count_7d,
        sum(is_transaction) over (
            partition by user_id order by at_us
            range between {{ days_in_microseconds(30) }} preceding and 1 preceding
        ) as user_txn_count_30d,
        sum(amount_usd) over (
            partition by user_id order by at_us
            range between {{ days_in_microseconds(7) }} preceding and 1 preceding
        ) as user_amount_sum_7d,
        sum(amount_usd) over (
            partition by user_id order by at_us
            range between {{ days_in_microseconds(30) }} preceding and 1 preceding
        ) as user_amount_sum_30d,
        max(case when is_transaction = 1 then at_us end) over (
            partition by user_id order by at_us
            range between unbounded preceding and 1 preceding
        ) as previous_transaction_us,
        sum(is_event) over (
            partition by user_id order by at_us
            range between {{ days_in_microseconds(30 / 1440) }} preceding and 1 preceding
        ) as session_events_before_txn
    from activity
),

transaction_windows as (
    select * from windowed
    where transaction_id is not null
),

---------- loyalty tier as it was at the transaction's time
tier_at_transaction as (
    select
        transactions.transaction_id,
        users_history.loyalty_tier
    from transactions
    inner join users_history
        on
            transactions.user_id = users_history.user_id
            and transactions.created_at >= users_history.dbt_valid_from
            and (transactions.created_at < users_history.dbt_valid_to or users_history.dbt_valid_to is null)
),

features as (
    select
        ---------- ids and time
        transactions.transaction_id,
        transactions.user_id,
        transactions.created_at,
        transactions.transaction_date,
        ---------- amount
        transactions.amount_usd,
        (cast(transactions.amount_usd as {{ dbt.type_float() }}) - parameters.amount_usd_mean)
        / nullif(parameters.amount_usd_stddev, 0) as amount_usd_scaled,
        coalesce(transactions.amount_usd > parameters.amount_usd_p99, false) as is_amount_outlier,
        ---------- calendar
        cast({{ date_part_hour('transactions.created_at') }} as integer) as hour_of_day,
        cast({{ iso_day_of_week('transactions.created_at') }} - 1 as integer) as day_of_week,
        {{ iso_day_of_week('transactions.created_at') }} in (6, 7) as is_weekend,
        ---------- user history windows
        cast(coalesce(transaction_windows.user_txn_count_1d, 0) as {{ dbt.type_int() }}) as user_txn_count_1d,
        cast(coalesce(transaction_windows.user_txn_count_7d, 0) as {{ dbt.type_int() }}) as user_txn_count_7d,
        cast(coalesce(transaction_windows.user_txn_count_30d, 0) as {{ dbt.type_int() }}) as user_txn_count_30d,
        coalesce(transaction_windows.user_amount_sum_7d, 0) as user_amount_sum_7d,
        coalesce(transaction_windows.user_amount_sum_30d, 0) as user_amount_sum_30d,
        transaction_windows.user_amount_sum_30d
        / nullif(transaction_windows.user_txn_count_30d, 0) as user_amount_mean_30d,
        (
            {{ epoch_microseconds('transactions.created_at') }} - transaction_windows.previous_transaction_us
        ) / 1000000.0 as seconds_since_prev_txn,
        cast(coalesce(transaction_windows.session_events_before_txn, 0) as {{ dbt.type_int() }}) as session_events_before_txn,
        ---------- user attributes
        cast(floor(
            ({{ epoch_microseconds('transactions.created_at') }} - {{ epoch_microseconds('users.signup_at') }})
            / {{ days_in_microseconds(1) }}.0
        ) as integer) as user_tenure_days,
        coalesce(cast(users.age as {{ dbt.type_float() }}), parameters.median_age) as age,
        users.age is null as is_age_imputed,
        users.country_group = 'us' as country_us,
        users.country_group = 'uk' as country_uk,
        users.country_group = 'ca' as country_ca,
        users.country_group = 'au' as country_au,
        users.country_group = 'other' as country_other,
        transactions.device_group = 'mobile' as device_mobile,
        transactions.device_group = 'desktop' as device_desktop,
        transactions.device_group = 'tablet' as device_tablet,
        transactions.device_group = 'other' as device_other,
        tier_at_transaction.loyalty_tier,
        ---------- label: a chargeback reported within the label window, known by the run date
        coalesce(
            labels.first_reported_at <= {{ dbt.dateadd('day', var('label_window_days'), 'transactions.created_at') }}
            and labels.first_reported_at < cast({{ dbt.dateadd('day', 1, run_date()) }} as timestamp),
            false
        ) as is_fraud,
        {{ dbt.dateadd('day', var('label_window_days'), 'transactions.created_at') }}
        <= cast({{ run_date() }} as timestamp) as is_label_matured
    from transactions
    inner join transaction_windows
        on transactions.transaction_id = transaction_windows.transaction_id
    inner join users
        on transactions.user_id = users.user_id
    left join tier_at_transaction
        on transactions.transaction_id = tier_at_transaction.transaction_id
    left join labels
        on transactions.transaction_id = labels.transaction_id
    cross join parameters
)

select * from features
