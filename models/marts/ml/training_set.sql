-- one row per valid transaction whose label has matured, with its time-based split;
-- the data a model is trained, validated and tested on
with

features as (
    select * from {{ ref('fct_transaction_features') }}
    where is_label_matured
),

splits as (
    select * from {{ ref('dataset_splits') }}
),

training_set as (
    select
        features.*,
        splits.split
    from features
    inner join splits
        on features.transaction_date = splits.transaction_date
)

select * from training_set
