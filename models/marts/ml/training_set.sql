{#- a view over fct_transaction_features and dataset_splits: a label that matures, or a split
    boundary that moves, changes no stored row. Published, it reads the published versions
    (meta.published_view, macros/publish.sql). -#}
{{
    config(
        materialized='view',
        meta={'published_view': 'training_set_view', 'day_column': 'transaction_date'},
    )
}}
-- one row per valid transaction whose label has matured, with its time-based split;
-- the data a model is trained, validated and tested on
{{ training_set_view({
    'fct_transaction_features': ref('fct_transaction_features'),
    'dataset_splits': ref('dataset_splits'),
}) }}
