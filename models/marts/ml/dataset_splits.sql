-- one row per day with matured labels: its time-based split (train, then validation, then test).
-- A label matures when transaction time + label_window_days <= the end of run_date.
with

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

matured_days as (
    select distinct transaction_date
    from transactions
    where {{ timestamp_add('day', var('label_window_days'), 'created_at') }} <= {{ run_date_end() }}
),

ranked as (
    select
        transaction_date,
        row_number() over (order by transaction_date) as day_number,
        count(*) over () as matured_day_count
    from matured_days
),

split as (
    select
        transaction_date,
        day_number,
        matured_day_count,
        case
            when day_number <= floor(matured_day_count * {{ var('train_fraction') }}) then 'train'
            when
                day_number
                <= floor(matured_day_count * ({{ var('train_fraction') }} + {{ var('validation_fraction') }}))
                then 'validation'
            else 'test'
        end as split
    from ranked
)

select * from split
