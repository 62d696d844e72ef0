{#- A run replaces whole days (BigQuery: the day partitions, clustered by user_id so a user's rows
    are kept together; the strategy per warehouse: macros/incremental_config.sql). -#}
{{
    config(
        materialized='incremental',
        on_schema_change='append_new_columns',
        pre_hook="{{ keys_as_text(['transaction_id', 'user_id']) }}",
        **incremental_by_day('transaction_date', cluster_by=['user_id']),
    )
}}
-- one row per valid transaction: its point-in-time history windows (the expensive part of the
-- features). Incremental by day: a run rebuilds only the days it must, plus reads the 31 days of
-- history their windows look back on. Which days: see the days_to_build macro.
{%- set lookback_days = 31 %}
with

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

events as (
    select * from {{ ref('int_events_validated') }}
    where rejection_rule is null
),

-- on an incremental run without given days: the days where the transactions the model holds differ
-- from its input in what the windows read (new, no longer valid, valid now, moved: the earlier day)
-- (read by days_to_build on an incremental run only: sqlfluff lints the full build, where it is not)
changed_days as (  -- noqa: ST03
    {%- if is_incremental() and not run_setting('from_date') %}
        select
            least(
                coalesce(transactions.transaction_date, built.transaction_date),
                coalesce(built.transaction_date, transactions.transaction_date)
            ) as changed_date
        from transactions
        full outer join {{ this }} as built
            on transactions.transaction_id = built.transaction_id
        where
            transactions.transaction_id is null
            or built.transaction_id is null
            or transactions.user_id is distinct from built.user_id
            or transactions.created_at is distinct from built.created_at
            or transactions.amount_usd is distinct from built.amount_usd
            or transactions.device_group is distinct from built.device_group
    {%- else %}
        select cast(null as date) as changed_date
    {%- endif %}
),

days_to_build as (
    {{ days_to_build('transactions', 'transaction_date', 'changed_days') }}
),

history_start as (
    select {{ dbt.dateadd('day', -1 * lookback_days, 'min(build_date)') }} as history_start_date
    from days_to_build
),

windowed as (
    {{ point_in_time_windows('transactions', 'events', '(select history_start_date from history_start)') }}
),

days_built as (
    {{ rows_on_days_to_build('windowed', 'transaction_date', 'days_to_build') }}
)

select * from days_built
