-- one row per currency and published rate, with the dates it applies to:
-- a rate holds from its date until the next published date (weekends and holidays use the last rate)
with

rates as (
    select * from {{ ref('stg_fx__rates') }}
    where rate_to_usd > 0
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
        source_load_id
    from rates
)

select * from ranged
