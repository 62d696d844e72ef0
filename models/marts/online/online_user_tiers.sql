-- one row per user per version of the users snapshot: the loyalty tier and when it held, so the
-- online feature store gives `loyalty_tier` as it was at any time, as fct_transaction_features does
with

snapshot as (
    select * from {{ ref('users_snapshot') }}
),

tiers as (
    select
        user_id,
        loyalty_tier,
        dbt_valid_from as valid_from,
        dbt_valid_to as valid_to
    from snapshot
)

select * from tiers
