{#-
    Casting raw text without crashing: a value that does not parse becomes null, and staging
    keeps the raw text beside it so the cleaning layer can quarantine the row with a reason.
-#}
{% macro safe_to_timestamp(column) -%}
    {{ return(adapter.dispatch('safe_to_timestamp', 'ml_features')(column)) }}
{%- endmacro %}

{#- DuckDB: parse as timestamptz (honours 'Z' and '+02:00'), then express in UTC without zone. A
    column that is already a timestamp is cast, not printed and parsed again (30% of staging's time) -#}
{% macro default__safe_to_timestamp(column) -%}
    cast(timezone('UTC', {{ try_cast_as(column, 'timestamptz') }}) as timestamp)
{%- endmacro %}

{% macro bigquery__safe_to_timestamp(column) -%}
    {{ try_cast_as('cast(' ~ column ~ ' as string)', 'timestamp') }}
{%- endmacro %}


{#- dbt-duckdb's dbt.safe_cast is a plain cast, so dispatch to try_cast / safe_cast ourselves -#}
{% macro try_cast_as(expression, data_type) -%}
    {{ return(adapter.dispatch('try_cast_as', 'ml_features')(expression, data_type)) }}
{%- endmacro %}

{% macro default__try_cast_as(expression, data_type) -%}
    try_cast({{ expression }} as {{ data_type }})
{%- endmacro %}

{% macro bigquery__try_cast_as(expression, data_type) -%}
    safe_cast({{ expression }} as {{ data_type }})
{%- endmacro %}


{% macro safe_to_decimal(column) -%}
    {{ try_cast_as('trim(cast(' ~ column ~ ' as ' ~ dbt.type_string() ~ '))', dbt.type_numeric()) }}
{%- endmacro %}


{% macro safe_to_integer(column) -%}
    {{ try_cast_as('trim(cast(' ~ column ~ ' as ' ~ dbt.type_string() ~ '))', dbt.type_bigint()) }}
{%- endmacro %}
