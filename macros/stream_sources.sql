{#-
    The stream's raw tables (`raw_stream`, loaded by realtime/consumer.py) exist only once the
    real-time consumer has loaded something: a warehouse that never ran the stream reads them as
    empty tables of the contract's columns, so every build works without it.
-#}

{#- relation_exists(relation): whether the warehouse holds `relation`; true while parsing and without
    introspection (the credential-free BigQuery compile check), where the SQL reading it is compiled -#}
{% macro relation_exists(relation) -%}
    {%- if not execute or not flags.INTROSPECT -%}
        {{ return(true) }}
    {%- endif -%}
    {{ return(load_relation(relation) is not none) }}
{%- endmacro %}


{#- stream_rows(table, columns): the rows of `raw_stream.<table>` of completed dlt loads, or, before
    the consumer ever loaded one, no rows with `columns` and dlt's `_dlt_load_id`, `_dlt_id` (all text) -#}
{% macro stream_rows(table, columns) -%}
    {%- set raw = source('stream', table) -%}
    {%- if relation_exists(raw) and relation_exists(source('stream', '_dlt_loads')) -%}
        select * from {{ raw }}
        where _dlt_load_id in ({{ completed_loads('stream') }})
    {%- else -%}
        select
            {%- for column in columns + ['_dlt_load_id', '_dlt_id'] %}
                cast(null as {{ dbt.type_string() }}) as {{ column }}{{ ',' if not loop.last }}
            {%- endfor %}
        where false
    {%- endif -%}
{%- endmacro %}
