-- one row: the preprocessing parameters fitted on the training window only (the train split),
-- with the run that fitted them, as a fitted imputer and scaler would store them
with

splits as (
    select * from {{ ref('dataset_splits') }}
    where split = 'train'
),

transactions as (
    select * from {{ ref('int_transactions_cleaned') }}
),

users as (
    select * from {{ ref('int_users_cleaned') }}
),

training_transactions as (
    select transactions.*
    from transactions
    inner join splits
        on transactions.transaction_date = splits.transaction_date
),

training_users as (
    select users.age
    from users
    where users.user_id in (select training_transactions.user_id from training_transactions)
),

amount_parameters as (
    select
        count(*) as training_row_count,
        min(transaction_date) as training_start_date,
        max(transaction_date) as training_end_date,
        -- floating-point sums depend on the order parallel threads add rows in: rounding to 9
        -- decimals makes the fitted values, and every feature scaled with them, reproducible
        round(avg(cast(amount_usd as {{ type_double() }})), 9) as amount_usd_mean,
        round(stddev_samp(cast(amount_usd as {{ type_double() }})), 9) as amount_usd_stddev,
        {{ percentile('cast(amount_usd as ' ~ type_double() ~ ')', 0.99) }} as amount_usd_p99
    from training_transactions
),

age_parameters as (
    select {{ percentile('cast(age as ' ~ type_double() ~ ')', 0.5) }} as median_age
    from training_users
),

parameters as (
    select
        amount_parameters.*,
        age_parameters.median_age,
        -- the day labels mature relative to: fct_transaction_features (a view) reads it here, so the
        -- published view gives the labels of the build it publishes, whenever it is read
        {{ run_date() }} as run_date,
        '{{ invocation_id }}' as fitted_by_invocation_id,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as timestamp) as fitted_at
    from amount_parameters
    cross join age_parameters
)

select * from parameters
