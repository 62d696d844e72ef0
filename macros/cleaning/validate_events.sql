{#-
    validate_events(events, users): a select of every row of `events` (shaped like stg_events__events)
    with the first validation rule it fails (null when valid) and a readable reason. `users` is the
    known users (a CTE name or a relation shaped like stg_app__users, read once). Both are the
    caller's: the macro refs nothing. Used by the table int_events_validated and the speed layer of
    realtime_transaction_features.
-#}
{% macro validate_events(events, users) %}
    select
        *,
        case rejection_rule
            when 'missing_key' then 'event_id is missing'
            when 'unparseable_timestamp' then 'occurred_at is missing or not a timestamp'
            when 'unknown_user'
                then 'user_id ' || coalesce(cast(user_id as {{ dbt.type_string() }}), 'null') || ' is not a known user'
        end as rejection_reason
    from (
        select
            events.*,
            case
                when events.event_id is null then 'missing_key'
                when events.occurred_at is null then 'unparseable_timestamp'
                when known_users.user_id is null then 'unknown_user'
            end as rejection_rule
        from {{ events }} as events
        -- an event whose user_id is null matches no user (an equality)
        left join {{ users }} as known_users
            on events.user_id = known_users.user_id
    ) as validated
{% endmacro %}
