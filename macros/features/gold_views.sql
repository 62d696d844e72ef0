{#-
    The SQL of the gold views (meta.published_view), as macros of the relations they read, so the
    same SQL is built twice: by dbt in the audit schema over the audited gold tables (the model
    passes its ref()s), and by the publish in `marts` over the published versions of the same
    models (macros/publish.sql passes those). `relations` maps a model name to its relation.
-#}

{#- fct_transaction_features: the stored windows with the user, the fitted parameters and the label applied -#}
{% macro fct_transaction_features_view(relations) %}
    {{ return(adapter.dispatch('fct_transaction_features_view', 'ml_features')(relations)) }}
{% endmacro %}

{% macro default__fct_transaction_features_view(relations) %}
with

windowed as (
    select * from {{ relations['fct_transaction_windows'] }}
),

features as (
    {{ transaction_features('windowed', {
        'parameters': relations['preprocessing_parameters'],
        'users': relations['online_users'],
        'tiers': relations['online_user_tiers'],
        'labels': relations['transaction_labels'],
    }) }}
)

select * from features
{% endmacro %}


{#- training_set: the rows of fct_transaction_features whose label has matured, with their split -#}
{% macro training_set_view(relations) %}
    {{ return(adapter.dispatch('training_set_view', 'ml_features')(relations)) }}
{% endmacro %}

{% macro default__training_set_view(relations) %}
with

features as (
    select * from {{ relations['fct_transaction_features'] }}
    where is_label_matured
),

splits as (
    select * from {{ relations['dataset_splits'] }}
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
{% endmacro %}
