-- one row per valid transaction: the rows of int_transactions_validated that broke no rule
with

validated as (
    select * from {{ ref('int_transactions_validated') }}
),

cleaned as (
    {{ clean_transactions('validated') }}
)

select * from cleaned
