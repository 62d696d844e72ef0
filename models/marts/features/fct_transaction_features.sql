{#- a view: the stored rows of fct_transaction_windows with what changes after a row is written
    applied where it is read. Published, the same SQL reads the published versions of these gold
    models (meta.published_view, macros/publish.sql). -#}
{{
    config(
        materialized='view',
        meta={'published_view': 'fct_transaction_features_view', 'day_column': 'transaction_date'},
    )
}}
-- one row per valid transaction: every feature computed only from what was known strictly before
-- the transaction's timestamp, the fitted preprocessing applied, and the label with its maturity
{{ fct_transaction_features_view({
    'fct_transaction_windows': ref('fct_transaction_windows'),
    'online_users': ref('online_users'),
    'online_user_tiers': ref('online_user_tiers'),
    'transaction_labels': ref('transaction_labels'),
    'preprocessing_parameters': ref('preprocessing_parameters'),
}) }}
