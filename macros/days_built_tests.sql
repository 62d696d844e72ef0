{#-
    Data tests on a run that builds given days check those days, and every day that received rows,
    in the models whose other days provably did not change since a build tested them; every row of
    everything else.

    A run of the pipeline for a day passes from_date..to_date (run settings): the incremental models
    rebuild only those days. The data tests of an intermediate model that declares its day
    (`meta.day_column`, a SQL date expression over its columns) and keeps the rows of the other
    days (incremental, or a view over such a model) then check the rows of those days and of the
    days the rows loaded since the last build land on (tested_from_date: a status change of an old
    transaction rebuilds no day, but is tested), not the whole history again: a `unique` over every
    event id costs more than building the day.
    The gold models are tested the same way, because the publish copies to `marts` exactly what was
    tested (macros/publish.sql): an incremental gold model with meta.day_column (fct_transaction_windows,
    user_daily_features) publishes only the days from_date..to_date the run built, which these tests
    checked, so a row on an old day of the audit table that no build wrote (an upstream bug, a hand
    edit) is never published; a gold view with meta.day_column (fct_transaction_features,
    training_set) is published over those published tables and over gold tables rebuilt and tested
    whole every run (the parameters, the splits, the labels, the users), so its stored columns were
    tested when their day was built and what it applies to them is tested in every build.
    A full build, or any run without from_date, tests every row. A test that needs the history (a
    baseline of earlier days) sets `meta: {all_days: true}`.

    get_where_subquery: dbt's hook that wraps a generic test's model with the test's `where`; here it
    also adds the days built. Singular tests call days_built_predicate themselves.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set filters = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do filters.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set day_column = day_column_of(relation) -%}
    {%- if day_column and run_setting('from_date') and not (config.get('meta') or {}).get('all_days') -%}
        {%- do filters.append(days_built_predicate(day_column)) -%}
    {%- endif -%}
    {%- if filters -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ filters | join(' and ') ~ ') as dbt_subquery') }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}


{#- the `meta.day_column` of the model built as `relation`, or none when its tests check every row: a
    model without one, or one dbt rebuilds whole (a table: every row is new) -#}
{% macro day_column_of(relation) -%}
    {%- set node = node_built_as(relation) -%}
    {%- if not node or node.config.materialized not in ('incremental', 'view') -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(node.config.meta.get('day_column')) }}
{%- endmacro %}


{#- a SQL predicate: `date_expression` lies in the days tested on a run that builds given days, else
    true: tested_from_date (the earliest day a row loaded since the last build lands on, so that an
    update which rebuilds no day is tested too; from_date when not given) .. to_date -#}
{% macro days_built_predicate(date_expression) -%}
    {%- set from_date = run_setting('from_date') -%}
    {%- if from_date -%}
        {{ date_expression }} between cast('{{ run_setting("tested_from_date") or from_date }}' as date)
        and cast('{{ run_setting("to_date") or from_date }}' as date)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
