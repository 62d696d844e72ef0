-- one row per valid user: text trimmed and lower-cased, countries grouped, bad ages nulled and flagged
with

users as (
    select * from {{ ref('stg_app__users') }}
    where user_id is not null
),

countries as (
    select * from {{ ref('country_codes') }}
),

cleaned as (
    select
        ---------- ids
        users.user_id,
        ---------- text
        lower(trim(users.raw_name)) as name,  -- noqa: RF04
        lower(trim(users.raw_email)) as email,
        coalesce(countries.country_group, 'other') as country_group,
        countries.country_code,
        nullif(lower(trim(users.raw_loyalty_tier)), '') as loyalty_tier,
        ---------- numerics: ages outside 0-120 are errors, imputed later with the fitted median
        case when users.age between 0 and 120 then users.age end as age,
        ---------- flags
        users.age is null as is_age_missing,
        coalesce(users.age not between 0 and 120, false) as is_age_out_of_range,
        countries.raw_value is null as is_country_unknown,
        users.signup_at is null as is_signup_at_unparseable,
        ---------- timestamps (utc)
        users.signup_at,
        users.updated_at,
        ---------- lineage
        users.source_load_id
    from users
    left join countries
        on lower(trim(users.raw_country)) = countries.raw_value
)

select * from cleaned
