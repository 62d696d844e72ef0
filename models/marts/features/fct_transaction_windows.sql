{#- A run replaces whole days, like int_transactions_windowed (BigQuery: insert_overwrite of the
    day partitions). The publish then replaces the same days of the published copy, never the whole
    table (macros/publish.sql). -#}
{{
    config(
        materialized='incremental',
        on_schema_change='append_new_columns',
        **incremental_by_day('transaction_date', cluster_by=['user_id']),
    )
}}
-- one row per valid transaction: the part of its features fixed once the row is written (the
-- transaction and its point-in-time history windows), stored by day. fct_transaction_features is a
-- view that applies to these rows what changes later (the fitted parameters, the label, the user).
with

windowed as (
    select * from {{ ref('int_transactions_windowed') }}
),

-- on an incremental run without given days: the days where the rows held differ from the windows
-- (read by days_to_build on an incremental run only: sqlfluff lints the full build, where it is not)
changed_days as (  -- noqa: ST03
    {%- if is_incremental() and not run_setting('from_date') %}
        select coalesce(windowed.transaction_date, built.transaction_date) as changed_date
        from windowed
        full outer join {{ this }} as built
            on windowed.transaction_id = built.transaction_id
        where
            windowed.transaction_id is null
            or built.transaction_id is null
            or windowed.user_id is distinct from built.user_id
            or windowed.created_at is distinct from built.created_at
            or windowed.transaction_date is distinct from built.transaction_date
            or windowed.amount_usd is distinct from built.amount_usd
            or windowed.device_group is distinct from built.device_group
            or windowed.source_load_id is distinct from built.source_load_id
            or windowed.user_txn_count_1d is distinct from built.user_txn_count_1d
            or windowed.user_txn_count_7d is distinct from built.user_txn_count_7d
            or windowed.user_txn_count_30d is distinct from built.user_txn_count_30d
            or windowed.user_amount_sum_7d is distinct from built.user_amount_sum_7d
            or windowed.user_amount_sum_30d is distinct from built.user_amount_sum_30d
            or windowed.user_amount_mean_30d is distinct from built.user_amount_mean_30d
            or windowed.seconds_since_prev_txn is distinct from built.seconds_since_prev_txn
            or windowed.session_events_before_txn is distinct from built.session_events_before_txn
    {%- else %}
        select cast(null as date) as changed_date
    {%- endif %}
),

-- (read by days_built on an incremental run or a run given its days only: not on the full build sqlfluff lints)
days_to_build as (  -- noqa: ST03
    {{ days_to_build('windowed', 'transaction_date', 'changed_days') }}
),

days_built as (
    {{ rows_on_days_to_build('windowed', 'transaction_date', 'days_to_build') }}
)

select * from days_built
