-- realtime_transaction_features serves each transaction once: no id twice (or null) among the
-- speed layer's rows, and none served by both layers (e.g. a newer version whose created_at moved
-- it to the speed layer's days while the batch layer still serves the old one). The batch layer's
-- own rows are fct_transaction_features', whose key is tested there. Every row, on a day's run too:
-- one pass over the speed layer (computing it is most of the cost of reading the view).
-- Tagged after_publish: the pipeline runs it once the gold it reads is published, so it checks what
-- consumers are served (orchestration/dbt_assets.py); a `dbt build` by hand runs it with the rest.
{{ config(tags=['after_publish']) }}
with

speed as (
    select transaction_id
    from {{ ref('realtime_transaction_features') }}
    where served_from = 'speed'
),

batch_of_speed_transactions as (
    select transaction_id
    from {{ ref('realtime_transaction_features') }}
    where served_from = 'batch' and transaction_id in (select speed.transaction_id from speed)
),

served as (
    select transaction_id from speed

    union all

    select transaction_id from batch_of_speed_transactions
),

served_twice as (
    select
        transaction_id,
        count(*) as times_served
    from served
    group by transaction_id
    having count(*) > 1 or transaction_id is null
)

select * from served_twice
