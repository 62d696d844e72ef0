{#-
    point_in_time_windows(transactions, events, history_start): one row per row of
    `transactions` dated on or after `history_start`, with the user's history computed only from what happened strictly
    before the transaction:

        windows [t - N days, t) over exact durations (microseconds since the epoch), where
        "1 preceding" excludes rows at the same microsecond, so ties are not "before".

    Rows from `history_start` on are read, plus each user's latest transaction before it, so
    seconds_since_prev_txn is right however long ago that was. Callers keep the rows of the days
    they build, which must start at least 30 days after `history_start`.

    Built to stay within a small memory limit at the benchmark's largest scale:
      * the transaction windows sort only the four columns they need (id, user, time, amount);
        the other columns join back on transaction_id;
      * the session window (events in [t - 30 min, t)) is not a window over transactions and
        events together (a sort of every event) but a range join on user and hour: an event can
        only fall in the 30 minutes before a transaction of its own hour or of the next one, so
        each event is matched under both hours and the join keeps those in range. The hash join
        holds only the transactions and streams the events.

    `transactions` is shaped like int_transactions_cleaned, `events` has user_id and occurred_at
    (relation or CTE names); `history_start` is a SQL date expression. Used by the batch model
    int_transactions_windowed and the speed layer of realtime_transaction_features, so the two
    never compute a feature differently.
-#}
{% macro point_in_time_windows(transactions, events, history_start) %}
    {%- set session_us = days_in_microseconds(30 / 1440) %}
    {#- the CTEs below are named apart from the callers' (an argument may name a CTE of the caller);
        each is read once, so DuckDB inlines it as it did the subqueries they were -#}
    with

    history_rows as (
        select
            transaction_id,
            user_id,
            amount_usd,
            {{ epoch_microseconds('created_at') }} as at_us
        from {{ transactions }}
        where transaction_date >= {{ history_start }}

        union all

        -- each user's latest transaction time before the history: seconds_since_prev_txn of their
        -- first transaction in it (a group-by, not a window over every earlier transaction, which
        -- ran out of memory on an incremental run; it is 31 days before the first day built, so only
        -- seconds_since_prev_txn sees it)
        select
            cast(null as {{ dbt.type_string() }}) as transaction_id,
            user_id,
            cast(null as {{ dbt.type_numeric() }}) as amount_usd,
            max({{ epoch_microseconds('created_at') }}) as at_us
        from {{ transactions }}
        where transaction_date < {{ history_start }}
        group by user_id
    ),

    transaction_history as (
        select
            transaction_id,
            cast(count(*) over last_1d as {{ dbt.type_int() }}) as user_txn_count_1d,
            cast(count(*) over last_7d as {{ dbt.type_int() }}) as user_txn_count_7d,
            cast(count(*) over last_30d as {{ dbt.type_int() }}) as user_txn_count_30d,
            coalesce(sum(amount_usd) over last_7d, 0) as user_amount_sum_7d,
            coalesce(sum(amount_usd) over last_30d, 0) as user_amount_sum_30d,
            sum(amount_usd) over last_30d / nullif(count(*) over last_30d, 0) as user_amount_mean_30d,
            (at_us - max(at_us) over all_before) / 1000000.0 as seconds_since_prev_txn
        from history_rows
        window
            by_user as (partition by user_id order by at_us),
            last_1d as (by_user range between {{ days_in_microseconds(1) }} preceding and 1 preceding),
            last_7d as (by_user range between {{ days_in_microseconds(7) }} preceding and 1 preceding),
            last_30d as (by_user range between {{ days_in_microseconds(30) }} preceding and 1 preceding),
            all_before as (by_user range between unbounded preceding and 1 preceding)
    ),

    transactions_by_hour as (
        select
            transaction_id,
            user_id,
            {{ epoch_microseconds('created_at') }} as at_us,
            {{ hour_number(epoch_microseconds('created_at')) }} as activity_hour
        from {{ transactions }}
        where transaction_date >= {{ history_start }}
    ),

    hour_offsets as (
        select 0 as hours_after
        union all
        select 1 as hours_after
    ),

    -- each event under its own hour and the next: the two hours whose transactions it can
    -- precede (one scan of the events, each row twice)
    -- (hours as integers: cheaper than truncating every event's timestamp to the hour twice)
    events_by_hour as (
        select
            events_in_range.user_id,
            {{ epoch_microseconds('events_in_range.occurred_at') }} as at_us,
            {{ hour_number(epoch_microseconds('events_in_range.occurred_at')) }}
            + hour_offsets.hours_after as activity_hour
        from {{ events }} as events_in_range
        cross join hour_offsets
        where events_in_range.occurred_at >= cast({{ history_start }} as {{ dbt.type_timestamp() }})
    ),

    sessions as (
        select
            transactions_by_hour.transaction_id,
            cast(count(*) as {{ dbt.type_int() }}) as session_events_before_txn
        from transactions_by_hour
        inner join events_by_hour
            on
                transactions_by_hour.user_id = events_by_hour.user_id
                and transactions_by_hour.activity_hour = events_by_hour.activity_hour
                and events_by_hour.at_us >= transactions_by_hour.at_us - {{ session_us }}
                and transactions_by_hour.at_us > events_by_hour.at_us
        group by transactions_by_hour.transaction_id
    )

    select
        ---------- the transaction
        transactions_in_range.transaction_id,
        transactions_in_range.user_id,
        transactions_in_range.created_at,
        transactions_in_range.transaction_date,
        transactions_in_range.amount_usd,
        transactions_in_range.device_group,
        transactions_in_range.source_load_id,
        ---------- its user's history before it
        transaction_history.user_txn_count_1d,
        transaction_history.user_txn_count_7d,
        transaction_history.user_txn_count_30d,
        transaction_history.user_amount_sum_7d,
        transaction_history.user_amount_sum_30d,
        transaction_history.user_amount_mean_30d,
        transaction_history.seconds_since_prev_txn,
        coalesce(sessions.session_events_before_txn, 0) as session_events_before_txn
    from {{ transactions }} as transactions_in_range
    inner join transaction_history
        on transactions_in_range.transaction_id = transaction_history.transaction_id
    left join sessions
        on transactions_in_range.transaction_id = sessions.transaction_id
    where transactions_in_range.transaction_date >= {{ history_start }}
{% endmacro %}
