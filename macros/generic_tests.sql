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


{#- the model holds exactly `expected_rows` rows (e.g. one row of fitted parameters) -#}
{% test row_count_equals(model, expected_rows) %}
    select count(*) as row_count
    from {{ model }}
    having count(*) != {{ expected_rows }}
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


{#-
    loads_completed: every row of a raw table dlt merges into belongs to a load recorded as completed
    in the source's `_dlt_loads`. dlt commits each table's merge (the delete of the replaced rows and
    the insert of the new ones, one transaction) before it records the load, at the end of the
    package: an extract killed in between leaves a table whose replaced rows are gone while the new
    ones are not yet visible to staging (which reads completed loads only). A build then would
    publish gold short of those rows, so the test stops it, loudly (error(): the message names the
    load and how to finish it; the build skips everything downstream and publishes nothing).
-#}
{% test loads_completed(model, source_name) %}
with

raw_loads as (
    select
        _dlt_load_id as load_id,
        count(*) as raw_rows
    from {{ model }}
    group by _dlt_load_id
),

completed as (
    {{ completed_loads(source(source_name, '_dlt_loads')) }}
),

unfinished as (
    select
        load_id,
        raw_rows,
        '{{ model }} holds ' || cast(raw_rows as {{ dbt.type_string() }}) || ' rows of dlt load ' || load_id
        || ' that is not recorded as completed in `_dlt_loads`: an extract of `{{ source_name }}` was'
        || ' interrupted after merging this table; run `python -m extract --sources {{ source_name }}`'
        || ' to finish that load, then build again' as failure_message
    from raw_loads
    where load_id not in (select completed.load_id from completed)
)

select *
from unfinished
where {{ fail_loudly('failure_message') }}
{% endtest %}


{#- a predicate that raises `message` (a SQL string) as the query's error, for a rule that must stop
    the run with its explanation rather than count offending rows -#}
{% macro fail_loudly(message) -%}
    error({{ message }}) is null
{%- endmacro %}
