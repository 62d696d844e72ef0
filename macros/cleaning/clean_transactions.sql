{#-
    clean_transactions(validated): the valid rows of `validated` (shaped like
    int_transactions_validated) with the columns the features use. Used by int_transactions_cleaned
    and the speed layer of realtime_transaction_features.
-#}
{% macro clean_transactions(validated) %}
    select
        ---------- ids
        transaction_id,
        user_id,
        ---------- numerics
        amount,
        currency,
        rate_to_usd,
        amount_usd,
        ---------- text
        status,
        case
            when device_type in ('mobile', 'desktop', 'tablet') then device_type
            else 'other'
        end as device_group,
        ---------- timestamps (utc)
        created_at,
        updated_at,
        cast(created_at as date) as transaction_date,
        ---------- lineage
        source_load_id
    from {{ validated }}
    where rejection_rule is null
{% endmacro %}
