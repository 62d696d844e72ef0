{#-
    Casting raw text without crashing: a value that does not parse becomes null, and staging
    keeps the raw text beside it so the cleaning layer can quarantine the row with a reason.
-#}
{% macro safe_to_timestamp(column) -%}
    {{ return(adapter.dispatch('safe_to_timestamp', 'ml_features')(column)) }}
{%- endmacro %}

{#- DuckDB: parse as timestamptz (honours 'Z' and '+02:00'), then express in UTC without zone. A
    column that is already a timestamp is cast, not printed and parsed again (a large part of
    staging's time). UTC from the instant's microseconds, not timezone('UTC', ...), which goes through
    a calendar per row; an infinite timestamp has no instant and becomes null -#}
{% macro default__safe_to_timestamp(column) -%}
    make_timestamp(epoch_us({{ try_cast_as(column, 'timestamptz') }}))
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
    {{ return(adapter.dispatch('safe_to_decimal', 'ml_features')(column)) }}
{%- endmacro %}

{#- DuckDB parses text into a decimal of more than 18 digits (dbt.type_numeric() is numeric(28,6), a
    128-bit integer) far slower than into decimal(18,6) (docs/benchmarks.md), so
    the 64-bit decimal of the same scale first; coalesce casts again only the rows it left null.
    DuckDB's casts skip the whitespace around a number themselves -#}
{% macro default__safe_to_decimal(column) -%}
    coalesce({{ try_cast_as(column, 'decimal(18, 6)') }}, {{ try_cast_as(column, dbt.type_numeric()) }})
{%- endmacro %}

{% macro bigquery__safe_to_decimal(column) -%}
    {{ try_cast_as('trim(cast(' ~ column ~ ' as string))', dbt.type_numeric()) }}
{%- endmacro %}


{% macro safe_to_integer(column) -%}
    {{ return(adapter.dispatch('safe_to_integer', 'ml_features')(column)) }}
{%- endmacro %}

{#- DuckDB: a bigint column is left as it is, text is parsed (the cast skips surrounding whitespace):
    a bigint is not printed and parsed again -#}
{% macro default__safe_to_integer(column) -%}
    {{ try_cast_as(column, dbt.type_bigint()) }}
{%- endmacro %}

{% macro bigquery__safe_to_integer(column) -%}
    {{ try_cast_as('trim(cast(' ~ column ~ ' as string))', dbt.type_bigint()) }}
{%- endmacro %}


{#- a key as text: integer ids become their decimal text, text ids stay as given; whitespace around
    it is dropped and an empty value is null. Keys compare as exact text: '00002' is not '2' -#}
{% macro safe_to_key(column) -%}
    {{ return(adapter.dispatch('safe_to_key', 'ml_features')(column)) }}
{%- endmacro %}

{% macro default__safe_to_key(column) -%}
    nullif(trim(cast({{ column }} as {{ dbt.type_string() }})), '')
{%- endmacro %}

{% macro bigquery__safe_to_key(column) -%}
    nullif(trim(cast({{ column }} as string)), '')
{%- endmacro %}


{#- raw_text(relation, column_name): the column as text, or when it is null the text dlt kept in its
    variant column `<column>__v_text` (a value the source's reader could not convert to the column's
    type, e.g. text in an INTEGER column); a table without the variant reads the column alone -#}
{% macro raw_text(relation, column_name) -%}
    coalesce(
        cast({{ adapter.quote(column_name) }} as {{ dbt.type_string() }}),
        {{ column_or_null(relation, column_name ~ '__v_text', dbt.type_string()) }}
    )
{%- endmacro %}


{#- keys_as_text(columns): a pre-hook of the tables a build keeps (incremental models, the snapshot):
    the statements that turn the key columns of the model's existing table that are not text yet (a
    warehouse built when keys were integers) into text, so the next run continues it. None when the
    table does not exist or its keys are text already -#}
{% macro keys_as_text(columns) -%}
    {{ return(adapter.dispatch('keys_as_text', 'ml_features')(columns)) }}
{%- endmacro %}

{% macro default__keys_as_text(columns) -%}
    {%- for column in columns_not_text(columns) %}
        alter table {{ this }} alter column {{ adapter.quote(column) }} type {{ dbt.type_string() }};
    {%- endfor %}
{%- endmacro %}

{#- BigQuery cannot change an INT64 column to STRING in place: the table must be built again -#}
{% macro bigquery__keys_as_text(columns) -%}
    {%- set integer_keys = columns_not_text(columns) -%}
    {%- if integer_keys -%}
        {{ exceptions.raise_compiler_error(
            this ~ ' holds ' ~ integer_keys | join(', ') ~ ' as integers (built before keys were text): rebuild it once'
            ~ ' with `dbt build --full-refresh` (a snapshot: drop its table first; its history starts again)'
        ) }}
    {%- endif -%}
{%- endmacro %}

{#- the key columns of the model's existing table that are not text; none without introspection -#}
{% macro columns_not_text(columns) -%}
    {%- if not execute or not flags.INTROSPECT -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) -%}
    {%- if existing is none or existing.is_view -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set found = [] -%}
    {%- for column in adapter.get_columns_in_relation(existing) -%}
        {%- if column.name | lower in columns and not column.is_string() -%}
            {%- do found.append(column.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(found) }}
{%- endmacro %}
