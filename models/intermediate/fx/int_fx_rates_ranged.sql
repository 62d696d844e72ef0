-- one row per currency and published rate, with the dates it applies to:
-- a rate holds from its date until the next published date (weekends and holidays use the last rate)
with

-- rates that break a rule (missing, not positive) are in the quarantine; the previous rate carries on
rates as (
    select * from {{ ref('int_fx_rates_validated') }}
    where rejection_rule is null
),

ranged as (
    select
        currency,
        rate_date as valid_from_date,
        coalesce(
            lead(rate_date) over (partition by currency order by rate_date),
            cast('9999-12-31' as date)
        ) as valid_to_date,
        rate_to_usd,
        source_load_id,
        source_row_id
    from rates
)

select * from ranged
