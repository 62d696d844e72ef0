{#-
    Helpers for reading dlt's raw tables.

    completed_loads(loads): the load ids dlt finished (status 0 in `loads`, a source's `_dlt_loads`). Staging reads only
    rows of completed loads, so a load killed half-way is never seen downstream.
-#}
{% macro completed_loads(loads) -%}
    select load_id from {{ loads }} where status = 0
{%- endmacro %}


{#- load_id_timestamp(load_id): when dlt made a load, as a UTC timestamp: a dlt load id is the unix
    time (seconds, with a fraction) its package was created -#}
{% macro load_id_timestamp(load_id) -%}
    {{ return(adapter.dispatch('load_id_timestamp', 'ml_features')(load_id)) }}
{%- endmacro %}

{% macro default__load_id_timestamp(load_id) -%}
    make_timestamp(cast(cast({{ load_id }} as double) * 1000000 as bigint))
{%- endmacro %}

{% macro bigquery__load_id_timestamp(load_id) -%}
    timestamp_micros(cast(cast({{ load_id }} as float64) * 1000000 as int64))
{%- endmacro %}


{#-
    column_or_null: the column when the raw table has it, else a typed null. Columns that appear
    part-way (schema evolution, e.g. users.loyalty_tier) do not break models built before they exist.

    Without introspection (`execute` false while parsing, or `dbt compile --no-introspect`, as the
    BigQuery compile check in CI runs without credentials) the warehouse cannot be asked, so the
    macro emits the column: that is the SQL that runs once dlt has created the column, the case that
    matters for checking it. A run with a connection always looks the table up.
-#}
{% macro column_or_null(relation, column_name, data_type) -%}
    {%- if not execute or not flags.INTROSPECT -%}
        cast({{ adapter.quote(column_name) }} as {{ data_type }})
    {%- else -%}
        {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- if column_name | lower in columns -%}
            cast({{ adapter.quote(column_name) }} as {{ data_type }})
        {%- else -%}
            cast(null as {{ data_type }})
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
