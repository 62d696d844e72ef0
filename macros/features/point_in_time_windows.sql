{#-
    point_in_time_windows(transactions, events, history_start): one row per row of
    `transactions` dated on or after `history_start`, with the user's history computed only from what happened strictly
    before the transaction:

        windows [t - N days, t) over exact durations (microseconds since the epoch), where
        "1 preceding" excludes rows at the same microsecond, so ties are not "before".

    Rows from `history_start` on are read, plus each user's latest transaction before it, so
    seconds_since_prev_txn is right however long ago that was. Callers keep the rows of the days
    they build, which must start at least 30 days after `history_start`.

    Two window passes: the transaction windows over the user's transactions only, and the session
    window over transactions and events together (one frame over the much larger event stream, not
    six: a third of the time at 1M transactions and 5M events), joined on transaction_id.

    `transactions` is shaped like int_transactions_cleaned, `events` has user_id and occurred_at
    (relation or CTE names); `history_start` is a SQL date expression. Used by the batch model
    int_transactions_windowed and the speed layer of realtime_transaction_features, so the two
    never compute a feature differently.
-#}
{% macro point_in_time_windows(transactions, events, history_start) %}
    select
        ---------- the transaction
        transaction_history.transaction_id,
        transaction_history.user_id,
        transaction_history.created_at,
        transaction_history.transaction_date,
        transaction_history.amount_usd,
        transaction_history.device_group,
        transaction_history.source_load_id,
        ---------- its user's history before it
        transaction_history.user_txn_count_1d,
        transaction_history.user_txn_count_7d,
        transaction_history.user_txn_count_30d,
        transaction_history.user_amount_sum_7d,
        transaction_history.user_amount_sum_30d,
        transaction_history.user_amount_mean_30d,
        transaction_history.seconds_since_prev_txn,
        coalesce(sessions.session_events_before_txn, 0) as session_events_before_txn
    from (
        select
            transaction_id,
            user_id,
            created_at,
            transaction_date,
            amount_usd,
            device_group,
            source_load_id,
            cast(count(*) over last_1d as {{ dbt.type_int() }}) as user_txn_count_1d,
            cast(count(*) over last_7d as {{ dbt.type_int() }}) as user_txn_count_7d,
            cast(count(*) over last_30d as {{ dbt.type_int() }}) as user_txn_count_30d,
            coalesce(sum(amount_usd) over last_7d, 0) as user_amount_sum_7d,
            coalesce(sum(amount_usd) over last_30d, 0) as user_amount_sum_30d,
            sum(amount_usd) over last_30d / nullif(count(*) over last_30d, 0) as user_amount_mean_30d,
            (at_us - max(at_us) over all_before) / 1000000.0 as seconds_since_prev_txn
        from (
            select
                *,
                {{ epoch_microseconds('created_at') }} as at_us
            from {{ transactions }}
            where transaction_date >= {{ history_start }}

            union all

            -- each user's latest transaction before the history: seconds_since_prev_txn of their first
            -- transaction in it
            select
                {{ star_except(['recency_rank']) }},
                {{ epoch_microseconds('created_at') }} as at_us
            from (
                select
                    *,
                    row_number() over (
                        partition by user_id order by created_at desc, transaction_id desc
                    ) as recency_rank
                from {{ transactions }}
                where transaction_date < {{ history_start }}
            ) as earlier_transactions
            where recency_rank = 1
        ) as transactions_in_history
        window
            by_user as (partition by user_id order by at_us),
            last_1d as (by_user range between {{ days_in_microseconds(1) }} preceding and 1 preceding),
            last_7d as (by_user range between {{ days_in_microseconds(7) }} preceding and 1 preceding),
            last_30d as (by_user range between {{ days_in_microseconds(30) }} preceding and 1 preceding),
            all_before as (by_user range between unbounded preceding and 1 preceding)
    ) as transaction_history
    left join (
        select
            transaction_id,
            session_events_before_txn
        from (
            select
                transaction_id,
                cast(sum(is_event) over (
                    partition by user_id order by at_us
                    range between {{ days_in_microseconds(30 / 1440) }} preceding and 1 preceding
                ) as {{ dbt.type_int() }}) as session_events_before_txn
            from (
                select
                    transaction_id,
                    user_id,
                    {{ epoch_microseconds('created_at') }} as at_us,
                    0 as is_event
                from {{ transactions }}
                where transaction_date >= {{ history_start }}

                union all

                select
                    cast(null as {{ dbt.type_bigint() }}) as transaction_id,
                    user_id,
                    {{ epoch_microseconds('occurred_at') }} as at_us,
                    1 as is_event
                from {{ events }}
                where occurred_at >= cast({{ history_start }} as {{ dbt.type_timestamp() }})
            ) as activity
        ) as activity_windowed
        where transaction_id is not null
    ) as sessions
        on transaction_history.transaction_id = sessions.transaction_id
    where transaction_history.transaction_date >= {{ history_start }}
{% endmacro %}
