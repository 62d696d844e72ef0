{#- incremental by day like int_transactions_windowed: see the days_to_build macro -#}
{{
    config(
        materialized='incremental',
        on_schema_change='append_new_columns',
        pre_hook="{{ keys_as_text(['user_id']) }}",
        **incremental_by_day('feature_date', cluster_by=['user_id']),
    )
}}
-- one row per user per day with at least one valid transaction: the user's features as of the
-- end of that day (windows of whole days ending at midnight after the day, so exact durations)
with

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

users as (
    select * from {{ ref('int_users_cleaned') }}
),

-- on an incremental run without given days: the user days the model holds that differ from its
-- input (a transaction new, moved, changed in a newer load, no longer valid or valid now)
-- (read by days_to_build on an incremental run only: sqlfluff lints the full build, where it is not)
changed_days as (  -- noqa: ST03
    {%- if is_incremental() and not run_setting('from_date') %}
        select coalesce(built.feature_date, user_days.transaction_date) as changed_date
        from (
            select
                user_id,
                transaction_date,
                count(*) as txn_count,
                max(created_at) as last_transaction_at,
                max(source_load_id) as source_load_id
            from transactions
            group by 1, 2
        ) as user_days
        full outer join {{ this }} as built
            on
                user_days.user_id = built.user_id
                and user_days.transaction_date = built.feature_date
        where
            user_days.user_id is null
            or built.user_id is null
            or user_days.txn_count != built.user_txn_count_1d
            or user_days.last_transaction_at is distinct from built.last_transaction_at
            or user_days.source_load_id is distinct from built.source_load_id
    {%- else %}
        select cast(null as date) as changed_date
    {%- endif %}
),

days_to_build as (
    {{ days_to_build('transactions', 'feature_date', 'changed_days') }}
),

history_start as (
    select {{ dbt.dateadd('day', -29, 'min(build_date)') }} as history_start_date
    from days_to_build
),

daily as (
    select
        transactions.user_id,
        transactions.transaction_date as feature_date,
        {{ day_number('transactions.transaction_date') }} as day_number,
        count(*) as txn_count,
        sum(transactions.amount_usd) as amount_sum,
        max(transactions.created_at) as last_transaction_at,
        max(transactions.source_load_id) as source_load_id
    from transactions
    cross join history_start
    where transactions.transaction_date >= history_start.history_start_date
    group by 1, 2, 3
),

windowed as (
    select
        user_id,
        feature_date,
        cast(txn_count as {{ dbt.type_int() }}) as user_txn_count_1d,
        cast(sum(txn_count) over last_7d as {{ dbt.type_int() }}) as user_txn_count_7d,
        cast(sum(txn_count) over last_30d as {{ dbt.type_int() }}) as user_txn_count_30d,
        sum(amount_sum) over last_7d as user_amount_sum_7d,
        sum(amount_sum) over last_30d as user_amount_sum_30d,
        last_transaction_at,
        source_load_id
    from daily
    window
        by_user as (partition by user_id order by day_number),
        last_7d as (by_user range between 6 preceding and current row),
        last_30d as (by_user range between 29 preceding and current row)
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
        users.country_group,
        windowed.source_load_id
    from windowed
    inner join users
        on windowed.user_id = users.user_id
),

days_built as (
    {{ rows_on_days_to_build('features', 'feature_date', 'days_to_build') }}
)

select * from days_built
