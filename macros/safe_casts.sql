{#-
    Casting raw text without crashing: a value that does not parse becomes null, and staging
    keeps the raw text beside it so the cleaning layer can quarantine the row with a reason.
-#}
{% macro safe_to_timestamp(column) -%}
    {{ return(adapter.dispatch('safe_to_timestamp', 'ml_features')(column)) }}
{%- endmacro %}

{#- DuckDB: parse as timestamptz (honours 'Z' and '+02:00'), then express in UTC without zone -#}
{% macro default__safe_to_timestamp(column) -%}
    cast(timezone('UTC', try_cast(cast({{ column }} as varchar) as timestamptz)) as timestamp)
{%- endmacro %}

{% macro bigquery__safe_to_timestamp(column) -%}
    safe_cast(cast({{ column }} as string) as timestamp)
{%- endmacro %}


{% macro safe_to_decimal(column) -%}
    {{ dbt.safe_cast('trim(cast(' ~ column ~ ' as ' ~ dbt.type_string() ~ '))', dbt.type_numeric()) }}
{%- endmacro %}


{% macro safe_to_integer(column) -%}
    {{ dbt.safe_cast('trim(cast(' ~ column ~ ' as ' ~ dbt.type_string() ~ '))', dbt.type_bigint()) }}
{%- endmacro %}
