-- one row per known currency and rate range: the currencies a transaction may be in (the reference
-- list, any currency the FX source serves, the reporting currency) with each of their rates and the
-- dates it applies to (null for a currency without rates), as validate_transactions reads them
with

currencies as (
    select currency from {{ ref('currencies') }}
    union distinct
    select currency from {{ ref('int_fx_rates_ranged') }}
    union distinct
    select '{{ var("reporting_currency") | trim | upper }}' as currency
),

rates as (
    select * from {{ ref('int_fx_rates_ranged') }}
),

online as (
    select
        currencies.currency,
        rates.valid_from_date,
        rates.valid_to_date,
        rates.rate_to_usd
    from currencies
    left join rates
        on currencies.currency = rates.currency
)

select * from online
