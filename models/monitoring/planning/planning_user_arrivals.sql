-- one row per row of the app's users and transaction of that user the history windows do not hold
-- although it is valid, or quarantined for an unknown user: the user's arrival makes it valid (and
-- the user's events count for it), so its day changes. The pipeline reads this for the users of its
-- new loads only (filtered by source_load_id, applied at the staging scan):
-- pipeline/warehouse/monitoring.py first_days.
with

app_users as (
    select * from {{ ref('stg_app__users') }}
),

validated as (
    select * from {{ ref('int_transactions_validated') }}
    where rejection_rule is null or rejection_rule = 'unknown_user'
),

windowed as (
    select * from {{ ref('int_transactions_windowed') }}
),

arrivals as (
    select
        'app' as source_name,
        'app.users' as source_table,
        app_users.source_load_id,
        app_users.source_row_id,
        app_users.user_id,
        validated.transaction_id,
        cast(validated.created_at as date) as transaction_date
    from app_users
    inner join validated
        on app_users.user_id = validated.user_id
    left join windowed
        on
            validated.transaction_id = windowed.transaction_id
            and validated.user_id = windowed.user_id
    where windowed.transaction_id is null
)

select * from arrivals
