{#-
    ref() and source() without the database part on DuckDB, so the warehouse file can be copied or
    renamed. DuckDB names a file's catalog after the file (`warehouse.duckdb` -> "warehouse") and
    stores a view's SQL as written: a view over `"warehouse"."staging"."x"` fails with `Catalog
    "warehouse" does not exist` once the file is opened under another name. dbt's documented way to
    change what ref() and source() return is a project macro calling `builtins` (docs: "About
    builtins Jinja variable"); these return the same relation with `include(database=false)`, so
    every model (the staging and realtime views included) names schema.table only, read in the
    catalog the view lives in. Other warehouses keep the database part (BigQuery's project).
-#}
{% macro ref() %}
    {%- set version = kwargs.get('version') or kwargs.get('v') %}
    {%- if (varargs | length) == 1 %}
        {%- set relation = builtins.ref(varargs[0], version=version) %}
    {%- else %}
        {%- set relation = builtins.ref(varargs[0], varargs[1], version=version) %}
    {%- endif %}
    {{ return(without_database(relation)) }}
{% endmacro %}


{% macro source(source_name, table_name) %}
    {{ return(without_database(builtins.source(source_name, table_name))) }}
{% endmacro %}


{#- the relation rendered as schema.identifier on DuckDB (anything that is not a relation, as-is) -#}
{% macro without_database(relation) %}
    {%- if target.type == 'duckdb' and relation is not string and relation.include is defined %}
        {{ return(relation.include(database=false)) }}
    {%- endif %}
    {{ return(relation) }}
{% endmacro %}
