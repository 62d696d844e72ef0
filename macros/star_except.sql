{#- `*` without some columns: DuckDB spells it `exclude`, BigQuery `except`. -#}
{% macro star_except(columns) -%}
    {{ return(adapter.dispatch('star_except', 'ml_features')(columns)) }}
{%- endmacro %}

{% macro default__star_except(columns) -%}
    * exclude ({{ columns | join(', ') }})
{%- endmacro %}

{% macro bigquery__star_except(columns) -%}
    * except ({{ columns | join(', ') }})
{%- endmacro %}
