{#-
    validate_transactions(transactions): a select of every row of `transactions` (a relation or CTE
    shaped like stg_app__transactions) with the first validation rule it fails (null when valid),
    a readable reason, and its amount in the reporting currency (var reporting_currency, USD by
    default) at the latest rate on or before its date; a transaction in the reporting currency
    converts at 1 without a rate row.
    What it reads besides `transactions` is the caller's (CTE names or relations; the macro refs
    nothing): `users` the known users (shaped like stg_app__users, read once), `currencies` the
    reference list (the seed currencies, read once), `rates` the FX rates by validity range (shaped
    like int_fx_rates_ranged, read twice: pass the relation, as DuckDB materializes a CTE read twice).
    Used by the table int_transactions_validated (batch) and by the speed layer of
    realtime_transaction_features, which validates rows loaded since the last build the same way.
-#}
{% macro validate_transactions(transactions, users, currencies, rates) %}
    with

    -- known: the reference list, any currency the FX source serves, and the reporting currency
    -- (no hidden limit: a currency with rates is known without editing the seed)
    known_currencies as (
        select currency from {{ currencies }}
        union distinct
        select currency from {{ rates }}
        union distinct
        select '{{ var("reporting_currency") | trim | upper }}' as currency
    ),

    transactions_joined as (
        select
            transaction_rows.*,
            known_users.user_id is not null as has_known_user,
            known_currencies.currency is not null as is_known_currency,
            -- the reporting currency converts at 1 and needs no rate row (rate_date stays null);
            -- like a rate, only on a date
            case
                when
                    transaction_rows.currency = '{{ var("reporting_currency") | trim | upper }}'
                    and transaction_rows.created_at is not null
                    then cast(1 as {{ type_double() }})
                else rates.rate_to_usd
            end as rate_to_usd,
            rates.valid_from_date as rate_date,
            rates.source_load_id as rate_source_load_id
        from {{ transactions }} as transaction_rows
        -- a transaction whose user_id is null matches no user (an equality)
        left join {{ users }} as known_users
            on transaction_rows.user_id = known_users.user_id
        left join known_currencies
            on transaction_rows.currency = known_currencies.currency
        left join {{ rates }} as rates
            on
                transaction_rows.currency = rates.currency
                -- on the rates' side: a condition on the transactions' side alone made DuckDB compare every
                -- transaction with every rate row (a nested-loop join) instead of hashing on the currency
                and rates.currency != '{{ var("reporting_currency") | trim | upper }}'
                and cast(transaction_rows.created_at as date) >= rates.valid_from_date
                and cast(transaction_rows.created_at as date) < rates.valid_to_date
    ),

    transactions_ruled as (
        select
            *,
            case
                when transaction_id is null then 'missing_key'
                when created_at is null then 'unparseable_timestamp'
                -- impossibly in the future: later than the moment dlt loaded the row, beyond clock skew
                when
                    created_at > {{ timestamp_add(
                        'minute', var('max_clock_skew_minutes'), load_id_timestamp('source_load_id')
                    ) }}
                    then 'created_at_in_future'
                -- a number (not nan) that the amount's decimal type cannot hold, e.g. 1e30
                when
                    amount is null
                    and {{ try_cast_as('raw_amount', type_double()) }} is not null
                    and lower(trim(raw_amount)) not in ('nan', '+nan', '-nan')
                    then 'amount_out_of_range'
                when amount is null then 'non_numeric_amount'
                when amount < 0 then 'negative_amount'
                when not is_known_currency then 'unknown_currency'
                when rate_to_usd is null then 'missing_fx_rate'
                when user_id is null or not has_known_user then 'unknown_user'
            end as rejection_rule
        from transactions_joined
    )

    select
        *,
        -- chr(39) is a single quote: DuckDB escapes one in a literal as '', BigQuery as \'
        case rejection_rule
            when 'missing_key' then 'transaction_id is missing'
            when 'unparseable_timestamp'
                then 'created_at ' || chr(39) || coalesce(raw_created_at, 'null') || chr(39) || ' is not a timestamp'
            when 'created_at_in_future'
                then 'created_at ' || cast(created_at as {{ dbt.type_string() }}) || ' is after the row was loaded ('
                    || cast({{ load_id_timestamp('source_load_id') }} as {{ dbt.type_string() }}) || ' UTC)'
            when 'amount_out_of_range'
                then 'amount ' || chr(39) || raw_amount || chr(39) || ' is a number too large to store'
            when 'non_numeric_amount'
                then 'amount ' || chr(39) || coalesce(raw_amount, 'null') || chr(39) || ' is not a number'
            when 'negative_amount' then 'amount ' || raw_amount || ' is negative'
            when 'unknown_currency'
                then 'currency ' || chr(39) || coalesce(currency, 'null') || chr(39) || ' is not a known currency'
            when 'missing_fx_rate'
                then 'no ' || currency || ' rate on or before '
                    || cast(cast(created_at as date) as {{ dbt.type_string() }})
            when 'unknown_user'
                then 'user_id ' || coalesce(cast(user_id as {{ dbt.type_string() }}), 'null') || ' is not a known user'
        end as rejection_reason,
        cast(amount * rate_to_usd as {{ dbt.type_numeric() }}) as amount_usd
    from transactions_ruled
{% endmacro %}
