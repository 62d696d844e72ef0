-- one row per valid transaction: the rows of int_transactions_validated that broke no rule
with

validated as (
    select * from {{ ref('int_transactions_validated') }}
),

cleaned as (
    select
        ---------- ids
        transaction_id,
        user_id,
        ---------- numerics
        amount,
        currency,
        rate_to_usd,
        amount_usd,
        ---------- text
        status,
        case
            when device_type in ('mobile', 'desktop', 'tablet') then device_type
            else 'other'
        end as device_group,
        ---------- timestamps (utc)
        created_at,
        updated_at,
        cast(created_at as date) as transaction_date,
        ---------- lineage
        source_load_id
    from validated
    where rejection_rule is null
)

select * from cleaned
