-- one row per transaction with a valid chargeback: when it was first reported. The label of
-- fct_transaction_features is applied from this table where the rows are read (a chargeback
-- reported weeks later changes an old row's label without rebuilding its day).
with

labels as (
    select * from {{ ref('int_transaction_labels') }}
),

published_labels as (
    select
        transaction_id,
        first_reported_at
    from labels
)

select * from published_labels
