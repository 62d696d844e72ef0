-- one row per valid transaction, fresh to the last dlt load (lambda architecture):
--   batch layer: the published fct_transaction_features (see macros/publish.sql) up to the last
--   day it was built for;
--   speed layer: transactions from that last (possibly partial) built day onward, computed at
--   query time from the cleaning views with the same macros as the batch layer.
with

batch as (
    select * from {{ published_relation('fct_transaction_features') }}
),

batch_cutoff as (
    select coalesce(max(transaction_date), cast('1970-01-01' as date)) as speed_from_date
    from batch
),

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

events as (
    select * from {{ ref('int_events_validated') }}
    where rejection_rule is null
),

recent_windowed as (
    {{ point_in_time_windows(
        'transactions', 'events',
        "(select " ~ dbt.dateadd('day', -31, 'speed_from_date') ~ " from batch_cutoff)"
    ) }}
),

speed_windowed as (
    select recent_windowed.*
    from recent_windowed
    cross join batch_cutoff
    where recent_windowed.transaction_date >= batch_cutoff.speed_from_date
),

speed as (
    {{ transaction_features('speed_windowed', published_relation('preprocessing_parameters')) }}
),

batch_before_cutoff as (
    select batch.*
    from batch
    cross join batch_cutoff
    where batch.transaction_date < batch_cutoff.speed_from_date
),

combined as (
    select
        *,
        'batch' as served_from
    from batch_before_cutoff

    union all

    select
        *,
        'speed' as served_from
    from speed
)

select * from combined
