{#-
    days_to_build(transactions, built_date_column, changed_days): a select of the distinct
    `transaction_date`s an incremental-by-day model must (re)build, as `build_date`:
      * from_date / to_date when given (vars, or ML_FEATURES_FROM_DATE / _TO_DATE) (the pipeline passes the day it runs, so re-running
        a day replaces exactly that day's rows);
      * on an incremental run, the last `reprocess_days` days already built and every later day,
        plus any day that received rows in a dlt load newer than the newest load already built
        (late-arriving rows), and every day from the earliest `changed_date` of `changed_days` on:
        the model compares what it holds with its input there (a transaction new, moved to another
        day, changed in what the features read, no longer valid, or valid now), so a run decides
        from the model's own rows, whatever runs (or subset builds of its parents) came before;
        a change reaches the windows of the later days, so they are rebuilt too;
      * on a full build, every day.
    `transactions` needs transaction_date and source_load_id; the model itself needs
    `built_date_column` and source_load_id; `changed_days` (a CTE name, read only on an incremental
    run without from_date) has `changed_date`.
-#}
{% macro days_to_build(transactions, built_date_column, changed_days) %}
    {%- if is_incremental() and not run_setting('from_date') %}
        with

        already_built as (
            select
                max({{ built_date_column }}) as last_built_date,
                max(source_load_id) as last_built_load_id
            from {{ this }}
        ),

        first_change as (
            select min(changed_date) as first_changed_date
            from {{ changed_days }}
        )

    {% endif %}
    select distinct transaction_rows.transaction_date as build_date
    from {{ transactions }} as transaction_rows
    {% if run_setting('from_date') %}
        where
            transaction_rows.transaction_date >= cast('{{ run_setting("from_date") }}' as date)
            and transaction_rows.transaction_date
            <= cast('{{ run_setting("to_date") or run_setting("from_date") }}' as date)
    {% elif is_incremental() %}
        cross join already_built
        cross join first_change
        where
            already_built.last_built_date is null
            or transaction_rows.transaction_date >= first_change.first_changed_date
            or transaction_rows.transaction_date
            >= {{ dbt.dateadd('day', -1 * var('reprocess_days'), 'already_built.last_built_date') }}
            or transaction_rows.source_load_id > already_built.last_built_load_id
    {% endif %}
{% endmacro %}


{#-
    rows_on_days_to_build(rows, date_column, days): a select of the rows of `rows` (a CTE name) whose
    `date_column` is a `build_date` of `days` (the CTE of days_to_build). On a full build without
    from_date that is every day: every row is kept without joining it to the days (a join that
    would keep every row anyway).
-#}
{% macro rows_on_days_to_build(rows, date_column, days) %}
    {%- if not run_setting('from_date') and not is_incremental() %}
        select * from {{ rows }}
    {%- else %}
        select {{ rows }}.*
        from {{ rows }}
        inner join {{ days }}
            on {{ rows }}.{{ date_column }} = {{ days }}.build_date
    {%- endif %}
{% endmacro %}
