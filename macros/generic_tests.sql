{#-
    Generic tests written once and reused (dbt_utils is not reachable here).
-#}

{#- the combination of `columns` is unique: the primary key of an entity x date grain -#}
{% test unique_combination(model, columns) %}
    select {{ columns | join(', ') }}, count(*) as duplicate_rows
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{#- every non-null value lies in [min_value, max_value] (either bound optional) -#}
{% test between(model, column_name, min_value=none, max_value=none) %}
    select {{ column_name }} as offending_value, *
    from {{ model }}
    where
        {{ column_name }} is not null
        and (
            false
            {%- if min_value is not none %} or {{ column_name }} < {{ min_value }}{% endif %}
            {%- if max_value is not none %} or {{ column_name }} > {{ max_value }}{% endif %}
        )
{% endtest %}


{#- a boolean SQL expression holds on every row -#}
{% test expression_is_true(model, expression) %}
    select *
    from {{ model }}
    where not coalesce({{ expression }}, false)
{% endtest %}
