{#-
    is_incremental: dbt's own macro, except when there is no warehouse to ask.

    dbt's is_incremental() asks the warehouse whether the model's table exists, which cannot work
    in `dbt compile --no-introspect` (.ci/check_bigquery_sql.py compiles for BigQuery without
    credentials). Without introspection this answers "first build", or "incremental run" when the
    environment variable ML_FEATURES_COMPILE_AS_INCREMENTAL is `true`, so the check reads both
    branches of incremental models. Every command with a connection gets dbt's answer unchanged.
-#}
{% macro is_incremental() -%}
    {%- if execute and not flags.INTROSPECT -%}
        {%- set as_incremental = env_var('ML_FEATURES_COMPILE_AS_INCREMENTAL', 'false') | lower == 'true' -%}
        {{ return(model.config.materialized == 'incremental' and as_incremental) }}
    {%- endif -%}
    {{ return(dbt.is_incremental()) }}
{%- endmacro %}

