-- Point-in-time correctness, checked by a different method than the model's range windows:
-- recompute every history feature with a plain self-join that only admits rows strictly
-- before the transaction, for the users whose id ends in 0 (one in ten of integer ids; keys are
-- text), and return each transaction whose stored
-- feature differs. A feature that used its own row, a tie at the same timestamp or anything
-- later would show up here.
with

-- on a run that builds given days, the transactions of those days (macros/days_built_tests.sql): the
-- windows this test recomputes are those int_transactions_windowed computed on the days it built; the
-- other tests of fct_transaction_features check every row
features as (
    select * from {{ ref('fct_transaction_features') }}
    where right(user_id, 1) = '0' and {{ days_built_predicate('transaction_date') }}
),

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
    where right(user_id, 1) = '0'
),

events as (
    select * from {{ ref('int_events_validated') }}
    where rejection_rule is null and right(user_id, 1) = '0'
),

earlier_transactions as (
    select
        features.transaction_id,
        count(case when earlier.created_at >= {{ timestamp_add('day', -1, 'features.created_at') }} then 1 end)
            as expected_count_1d,
        count(case when earlier.created_at >= {{ timestamp_add('day', -7, 'features.created_at') }} then 1 end)
            as expected_count_7d,
        count(case when earlier.created_at >= {{ timestamp_add('day', -30, 'features.created_at') }} then 1 end)
            as expected_count_30d,
        coalesce(sum(
            case
                when earlier.created_at >= {{ timestamp_add('day', -30, 'features.created_at') }}
                    then earlier.amount_usd
            end
        ), 0) as expected_sum_30d,
        max(earlier.created_at) as expected_previous_at
    from features
    left join transactions as earlier
        on
            features.user_id = earlier.user_id
            and features.created_at > earlier.created_at
    group by features.transaction_id
),

earlier_events as (
    select
        features.transaction_id,
        count(events.user_id) as expected_session_events
    from features
    left join events
        on
            features.user_id = events.user_id
            and features.created_at > events.occurred_at
            and {{ timestamp_add('minute', -30, 'features.created_at') }} <= events.occurred_at
    group by features.transaction_id
),

compared as (
    select
        features.transaction_id,
        features.user_txn_count_1d,
        earlier_transactions.expected_count_1d,
        features.user_txn_count_7d,
        earlier_transactions.expected_count_7d,
        features.user_txn_count_30d,
        earlier_transactions.expected_count_30d,
        features.user_amount_sum_30d,
        earlier_transactions.expected_sum_30d,
        features.seconds_since_prev_txn,
        earlier_transactions.expected_previous_at,
        features.session_events_before_txn,
        earlier_events.expected_session_events
    from features
    inner join earlier_transactions
        on features.transaction_id = earlier_transactions.transaction_id
    inner join earlier_events
        on features.transaction_id = earlier_events.transaction_id
)

select *
from compared
where
    user_txn_count_1d != expected_count_1d
    or user_txn_count_7d != expected_count_7d
    or user_txn_count_30d != expected_count_30d
    or abs(user_amount_sum_30d - expected_sum_30d) > 0.000001
    or session_events_before_txn != expected_session_events
    or (seconds_since_prev_txn is null) != (expected_previous_at is null)
