-- one row per published rate with the first validation rule it fails (null when valid) and a
-- readable reason: a rate that is missing, not a number or not positive cannot convert amounts
with

rates as (
    select * from {{ ref('stg_fx__rates') }}
),

validated as (
    select
        *,
        case
            when rate_date is null or currency is null or currency = '' then 'missing_key'
            when rate_to_usd is null then 'missing_rate'
            when rate_to_usd <= 0 then 'non_positive_rate'
        end as rejection_rule
    from rates
),

explained as (
    select
        *,
        -- chr(39) is a single quote: DuckDB escapes one in a literal as '', BigQuery as \'
        case rejection_rule
            when 'missing_key'
                then 'date ' || chr(39) || coalesce(raw_rate_date, 'null') || chr(39) || ' or currency '
                    || chr(39) || coalesce(currency, 'null') || chr(39) || ' is missing or not valid'
            when 'missing_rate'
                then 'rate_to_usd ' || chr(39) || coalesce(raw_rate_to_usd, 'null') || chr(39)
                    || ' is missing or not a number'
            when 'non_positive_rate' then 'rate_to_usd ' || raw_rate_to_usd || ' is not positive'
        end as rejection_reason
    from validated
)

select * from explained
