-- one row per valid event the online feature store starts from: those of the reprocess_days and one
-- day before the newest transaction date on (session_events_before_txn counts a user's events in the
-- 30 minutes before a transaction, and rows arrive up to reprocess_days late)
{%- set lookback_days = 1 + var('reprocess_days') %}
with

events as (
    select * from {{ ref('int_events_validated') }}
    where rejection_rule is null
),

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

history_start as (
    select cast(max(transaction_date) as {{ dbt.type_timestamp() }}) as last_day_start
    from transactions
),

online as (
    select
        events.event_id,
        events.user_id,
        events.occurred_at
    from events
    cross join history_start
    where events.occurred_at >= {{ timestamp_add('day', -1 * lookback_days, 'history_start.last_day_start') }}
)

select * from online
