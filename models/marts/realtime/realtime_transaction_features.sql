-- one row per valid transaction, fresh to the last dlt load (lambda architecture):
--   batch layer: the published fct_transaction_features (see macros/publish.sql) up to the last
--   day it was built for;
--   speed layer: transactions from that last (possibly partial) built day onward, computed at
--   query time with the same macros as the batch layer: the cleaning tables' decisions as of the
--   last build, with the keys an incremental run would decide again now decided again (from the
--   staging views, so rows loaded after the last build count), and only the history's rows windowed.
-- The newest load those tables hold is read when the view is compiled (each build recreates it
-- after them), so the new rows are found by a filter that reaches the raw tables' scans; the newest
-- load they hold when the view is read bounds them too (tables built again since, without the view).
-- Its inputs: the import CTEs below, and the relations passed to the macros where their SQL reads one
-- several times (DuckDB would materialize such a CTE whole): the staging views, the cleaning tables,
-- the users and the FX rates the validation reads.
-- The published tables it reads exist before the first publish, empty: its pre-hook creates them
-- when the view is created, never while it is compiled (macros/publish.sql).
-- Its columns' descriptions stay in dbt docs, not in the warehouse: DuckDB binds the whole view again
-- for each column's comment and at the commit (5 s of every build, at any scale).
{{
    config(
        pre_hook="{{ create_published_placeholders([
            ref('fct_transaction_features'), ref('preprocessing_parameters'), ref('fct_transaction_windows')
        ]) }}",
        persist_docs={"relation": true, "columns": false}
    )
}}

with

batch as (
    select * from {{ published(ref('fct_transaction_features')) }}
),

published_parameters as (
    select * from {{ published(ref('preprocessing_parameters')) }}
),

online_users as (
    select * from {{ ref('online_users') }}
),

online_user_tiers as (
    select * from {{ ref('online_user_tiers') }}
),

transaction_labels as (
    select * from {{ ref('transaction_labels') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

-- the last day the batch was built for, from the published windows table (not from `batch`, a view:
-- read twice, DuckDB would compute and hold all of its rows)
batch_cutoff as (
    select coalesce(max(transaction_date), cast('1970-01-01' as date)) as speed_from_date
    from {{ published(ref('fct_transaction_windows')) }}
),

history_start as (
    select {{ dbt.dateadd('day', -31, 'speed_from_date') }} as history_start_date
    from batch_cutoff
),

-- the speed layer starts from the cleaning tables' decisions as of the last build and decides again,
-- with the same macros, exactly the keys an incremental run of them would decide again now (rows
-- loaded since, pushed to the ingestion service since, quarantined for a reason that may have gone):
-- what the batch would compute if it ran now, without deduplicating every staged row
built_transactions as (
    select * from {{ ref('int_transactions_validated') }}
),

transactions_decided_again as (
    {{ deduplicate_transactions(
        [ref('stg_app__transactions'), ref('stg_stream__transactions')],
        recheck=transactions_recheck(ref('int_transactions_validated'), ref('stg_fx__rates')),
        built=ref('int_transactions_validated')
    ) }}
),

transactions_validated_again as (
    {{ validate_transactions(
        'transactions_decided_again',
        users=ref('stg_app__users'),
        currencies='currencies',
        rates=ref('int_fx_rates_ranged')
    ) }}
),

-- the table's rows an incremental run would keep (it replaces the keys it decides again)
transactions_kept as (
    select built_transactions.*
    from built_transactions
    where
        built_transactions.transaction_id not in (
            select transactions_validated_again.transaction_id
            from transactions_validated_again
            where transactions_validated_again.transaction_id is not null
        )
),

transactions as (
    select * from ({{ clean_transactions('transactions_kept') }}) as kept
    union all
    select * from ({{ clean_transactions('transactions_validated_again') }}) as decided_again
),

-- the rows point_in_time_windows reads: from the history's start on, and each user's latest
-- transaction before it
latest_before_history as (
    select
        transactions.user_id,
        max(transactions.created_at) as latest_created_at
    from transactions
    cross join history_start
    where transactions.transaction_date < history_start.history_start_date
    group by transactions.user_id
),

transactions_in_history as (
    select transactions.*
    from transactions
    cross join history_start
    where transactions.transaction_date >= history_start.history_start_date

    union all

    select transactions.*
    from transactions
    inner join latest_before_history
        on
            transactions.user_id = latest_before_history.user_id
            and transactions.created_at = latest_before_history.latest_created_at
),

built_events as (
    select * from {{ ref('int_events_validated') }}
),

events_decided_again as (
    {{ deduplicate_events(
        [ref('stg_events__events'), ref('stg_stream__events')],
        recheck=events_recheck(),
        columns=['event_id', 'user_id', 'occurred_at', 'source_batch_file', 'source_load_id', 'source_row_id'],
        built=ref('int_events_validated')
    ) }}
),

events_validated_again as (
    {{ validate_events('events_decided_again', users=ref('stg_app__users')) }}
),

-- the valid events from the history's start on
events as (
    select
        built_events.user_id,
        built_events.occurred_at
    from built_events
    cross join history_start
    where
        built_events.rejection_rule is null
        and built_events.occurred_at >= cast(history_start.history_start_date as {{ dbt.type_timestamp() }})
        and built_events.event_id not in (
            select events_validated_again.event_id
            from events_validated_again
            where events_validated_again.event_id is not null
        )

    union all

    select
        user_id,
        occurred_at
    from events_validated_again
    where rejection_rule is null
),

recent_windowed as (
    {{ point_in_time_windows(
        'transactions_in_history', 'events', '(select history_start_date from history_start)'
    ) }}
),

speed_windowed as (
    select recent_windowed.*
    from recent_windowed
    cross join batch_cutoff
    where recent_windowed.transaction_date >= batch_cutoff.speed_from_date
),

speed as (
    {{ transaction_features('speed_windowed', {
        'parameters': 'published_parameters',
        'users': 'online_users',
        'tiers': 'online_user_tiers',
        'labels': 'transaction_labels',
        'run_date_end': run_date_end(),
    }) }}
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
