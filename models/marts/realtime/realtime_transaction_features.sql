-- one row per valid transaction, fresh to the last dlt load (lambda architecture):
--   batch layer: the published fct_transaction_features (see macros/publish.sql) up to the last
--   day it was built for;
--   speed layer: transactions from that last (possibly partial) built day onward, computed at
--   query time from the staging views with the same macros as the batch layer.
with

batch as (
    select * from {{ published_relation('fct_transaction_features') }}
),

batch_cutoff as (
    select coalesce(max(transaction_date), cast('1970-01-01' as date)) as speed_from_date
    from batch
),

-- the speed layer deduplicates, validates and cleans straight from the staging views, with the same
-- macros as the cleaning tables, so it sees rows loaded after the last build
staged_transactions as (
    {{ deduplicate_transactions() }}
),

validated_transactions as (
    {{ validate_transactions('staged_transactions') }}
),

transactions as (
    {{ clean_transactions('validated_transactions') }}
),

staged_events as (
    {{ deduplicate_events() }}
),

events as (
    select * from ({{ validate_events('staged_events') }}) as validated_events
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
