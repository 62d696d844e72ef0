{#-
    apply_duckdb_settings(): on DuckDB, the settings the environment asks for, as the first statement
    of every dbt invocation (on-run-start). ML_FEATURES_DUCKDB_MEMORY_LIMIT (e.g. 2GB) caps the
    memory DuckDB uses; past it DuckDB spills to disk. dlt and the pipeline read the same variable
    (extract/load.py: duckdb_settings). Nothing on BigQuery or when unset.
-#}
{% macro apply_duckdb_settings() %}
    {%- set memory_limit = env_var('ML_FEATURES_DUCKDB_MEMORY_LIMIT', '') | trim -%}
    {%- if target.type == 'duckdb' and memory_limit -%}
        set memory_limit = '{{ memory_limit }}'
    {%- endif -%}
{% endmacro %}
