{#-
    is_incremental: dbt's own macro, except when there is no warehouse to ask.

    dbt's is_incremental() asks the warehouse whether the model's table exists, which cannot work
    in `dbt compile --no-introspect` (ci/check_bigquery_sql.py compiles for BigQuery without
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


{#-
    previous_build(): this model's table as its last build left it, for a table model that carries
    results over from it (row_reconciliation); none on a full refresh or the first build. Without
    introspection it answers as is_incremental() does: none, or `this` when
    ML_FEATURES_COMPILE_AS_INCREMENTAL is `true` (so the BigQuery check reads both branches). A table model may read it while it is rebuilt: dbt-duckdb builds the new
    table under a temporary name and swaps it in, BigQuery's `create or replace table` reads a
    snapshot of the old one.
-#}
{% macro previous_build() -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not flags.INTROSPECT -%}
        {{ return(this if env_var('ML_FEATURES_COMPILE_AS_INCREMENTAL', 'false') | lower == 'true' else none) }}
    {%- endif -%}
    {{ return(adapter.get_relation(this.database, this.schema, this.identifier)) }}
{%- endmacro %}
