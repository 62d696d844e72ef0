-- one row per distinct transaction with the first validation rule it fails (null when valid),
-- a readable reason, and its amount converted to US dollars at the latest rate on or before its date
with

transactions as (
    select * from {{ ref('stg_app__transactions') }}
),

users as (
    select user_id from {{ ref('stg_app__users') }}
    where user_id is not null
),

currencies as (
    select currency from {{ ref('currencies') }}
),

rates as (
    select * from {{ ref('int_fx_rates_ranged') }}
),

joined as (
    select
        transactions.*,
        users.user_id is not null as has_known_user,
        currencies.currency is not null as is_known_currency,
        rates.rate_to_usd,
        rates.valid_from_date as rate_date
    from transactions
    left join users
        on transactions.user_id = users.user_id
    left join currencies
        on transactions.currency = currencies.currency
    left join rates
        on
            transactions.currency = rates.currency
            and cast(transactions.created_at as date) >= rates.valid_from_date
            and cast(transactions.created_at as date) < rates.valid_to_date
),

validated as (
    select
        *,
        case
            when transaction_id is null then 'missing_key'
            when created_at is null then 'unparseable_timestamp'
            when amount is null then 'non_numeric_amount'
            when amount < 0 then 'negative_amount'
            when not is_known_currency then 'unknown_currency'
            when rate_to_usd is null then 'missing_fx_rate'
            when user_id is null or not has_known_user then 'unknown_user'
        end as rejection_rule
    from joined
),

explained as (
    select
        *,
        -- chr(39) is a single quote: DuckDB escapes one in a literal as '', BigQuery as \'
        case rejection_rule
            when 'missing_key' then 'transaction_id is missing or not an integer'
            when 'unparseable_timestamp'
                then 'created_at ' || chr(39) || coalesce(raw_created_at, 'null') || chr(39) || ' is not a timestamp'
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
    from validated
)

select * from explained
