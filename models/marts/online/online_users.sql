-- one row per valid user: what the online feature store (realtime/online_store.py) needs of a user
-- to compute the features of fct_transaction_features, published with the rest of the gold
with

users as (
    select * from {{ ref('int_users_cleaned') }}
),

online as (
    select
        user_id,
        signup_at,
        age,
        country_group
    from users
)

select * from online
