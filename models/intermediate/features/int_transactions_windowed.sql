{#- A run replaces whole days. dbt-bigquery has no delete+insert: on BigQuery the table is
    partitioned by day and a run overwrites the partitions of the days it built (insert_overwrite),
    the same rows either way; clustering by user_id keeps a user's rows together. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite' if target.type == 'bigquery' else 'delete+insert',
        unique_key='transaction_date',
        partition_by={'field': 'transaction_date', 'data_type': 'date'} if target.type == 'bigquery' else none,
        cluster_by=['user_id'] if target.type == 'bigquery' else none,
        on_schema_change='append_new_columns',
    )
}}
-- one row per valid transaction: its point-in-time history windows (the expensive part of the
-- features). Incremental by day: a run rebuilds only the days it must, plus reads the 31 days of
-- history their windows look back on. Which days:
--   * vars from_date / to_date when given (the pipeline passes the day it runs: re-running a day
--     replaces exactly that day's rows with identical ones);
--   * otherwise the last reprocess_days days already built and every later day, plus any day that
--     received rows in a dlt load newer than the newest load already built (late-arriving rows).
{%- set lookback_days = 31 %}
with

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

events as (
    select * from {{ ref('int_events_validated') }}
    where rejection_rule is null
),

already_built as (
    {% if is_incremental() %}
        select
            max(transaction_date) as last_built_date,
            max(source_load_id) as last_built_load_id
        from {{ this }}
    {% else %}
        select
            cast(null as date) as last_built_date,
            cast(null as {{ dbt.type_string() }}) as last_built_load_id
    {% endif %}
),

days_to_build as (
    select distinct transactions.transaction_date
    from transactions
    cross join already_built
    where
        {% if var('from_date', none) %}
            transactions.transaction_date >= cast('{{ var("from_date") }}' as date)
            and transactions.transaction_date <= cast('{{ var("to_date", var("from_date")) }}' as date)
        {% else %}
            already_built.last_built_date is null
            or transactions.transaction_date
            >= {{ dbt.dateadd('day', -1 * var('reprocess_days'), 'already_built.last_built_date') }}
            or transactions.source_load_id > already_built.last_built_load_id
        {% endif %}
),

history_start as (
    select {{ dbt.dateadd('day', -1 * lookback_days, 'min(transaction_date)') }} as history_start_date
    from days_to_build
),

windowed as (
    {{ point_in_time_windows('transactions', 'events', '(select history_start_date from history_start)') }}
),

days_built as (
    select windowed.*
    from windowed
    inner join days_to_build
        on windowed.transaction_date = days_to_build.transaction_date
)

select * from days_built
