{#-
    is_incremental: dbt's own macro, except when there is no warehouse to ask.

    dbt's is_incremental() asks the warehouse whether the model's table exists, which cannot work
    in `dbt compile --no-introspect` (ci/check_bigquery_sql.py compiles for BigQuery without
    credentials). Without introspection this answers "first build", or "incremental run" when the
    var `compile_as_incremental` is true, so the check reads both branches of incremental models.
    Every command with a connection (run, build, compile) gets dbt's answer unchanged.
-#}
{% macro is_incremental() -%}
    {%- if execute and not flags.INTROSPECT -%}
        {{ return(model.config.materialized == 'incremental' and var('compile_as_incremental', false) == true) }}
    {%- endif -%}
    {{ return(dbt.is_incremental()) }}
{%- endmacro %}
