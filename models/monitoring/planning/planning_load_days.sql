-- one row per row of a dlt load a run plans its days from (per source: the app's transactions and
-- users, the events, the FX rates, the real-time stream's transactions and events): the day the row
-- lands on (loaded_date: the run's data tests check from the earliest, so every row that arrived is
-- tested, a status change included) and the earliest day it can change (affected_date: the run
-- builds from the earliest). An event or a rate changes its day and every later one: a late event
-- counts in the sessions before the transactions after it, a rate converts the amounts of its day
-- and of the days after it (each day's windows look back 30 days, so every later day is rebuilt
-- anyway). A pushed transaction of the stream is judged like one of the app's, and its day is
-- rebuilt in any case.
-- The pipeline reads it before a build for its new loads only: pipeline/warehouse/monitoring.py first_days.
-- The day-partitioned gold models are listed so that the pipeline, finding one not built yet (a first
-- build, a model added since), builds every day:
-- depends_on: {{ ref('fct_transaction_windows') }}, {{ ref('user_daily_features') }}
with

transaction_changes as (
    select * from {{ ref('planning_transaction_changes') }}
),

user_arrivals as (
    select * from {{ ref('planning_user_arrivals') }}
),

events as (
    select * from {{ ref('stg_events__events') }}
),

stream_events as (
    select * from {{ ref('stg_stream__events') }}
),

fx_rates as (
    select * from {{ ref('stg_fx__rates') }}
),

load_days as (
    select
        source_name,
        source_table,
        source_load_id,
        source_row_id,
        transaction_id,
        loaded_date,
        case
            when source_name = 'stream'
                then least(coalesce(loaded_date, changed_date), coalesce(changed_date, loaded_date))
            else changed_date
        end as affected_date
    from transaction_changes
    union all
    select
        source_name,
        source_table,
        source_load_id,
        source_row_id,
        transaction_id,
        cast(null as date) as loaded_date,
        transaction_date as affected_date
    from user_arrivals
    union all
    select
        'events' as source_name,
        source_table,
        source_load_id,
        source_row_id,
        cast(null as {{ dbt.type_string() }}) as transaction_id,
        cast(occurred_at as date) as loaded_date,
        cast(occurred_at as date) as affected_date
    from events
    union all
    select
        'stream' as source_name,
        source_table,
        source_load_id,
        source_row_id,
        cast(null as {{ dbt.type_string() }}) as transaction_id,
        cast(occurred_at as date) as loaded_date,
        cast(occurred_at as date) as affected_date
    from stream_events
    union all
    select
        'fx' as source_name,
        'fx.rates' as source_table,
        source_load_id,
        source_row_id,
        cast(null as {{ dbt.type_string() }}) as transaction_id,
        rate_date as loaded_date,
        rate_date as affected_date
    from fx_rates
)

select * from load_days
