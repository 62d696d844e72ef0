{#-
    quarantined_share_below: the share of a source table's rows the quarantine holds stays below two
    thresholds, per table. `model` is the quarantine (one row per rejected record: `source_table`,
    `rejection_rule`, `rejection_reason`, `record_key`); `table_rows` is a relation with the rows of
    every source table (`source_table`, and `rows_column` summed per table, e.g. the staged rows of
    monitoring.row_reconciliation: valid + quarantined, duplicates not counted).

    The test returns one row per table whose quarantined share exceeds `warn_share` (default: var
    `warn_quarantined_share`), naming the table, its rows, the quarantined rows, the share, the top
    rule and one sample reason, and a `failure_message` saying it in one line: the rows dbt stores
    (schema `test_failures`) explain the breach on their own. The test's own warn_if / error_if say
    what a breach does: any row warns; it errors when a table's share exceeds `max_share` (default:
    var `max_quarantined_share`). A table with no rows (a source turned off: 0 of 0) never breaches.
-#}
{% test quarantined_share_below(model, table_rows, rows_column='staged_rows', max_share=none, warn_share=none) %}
{%- set max_share = (var('max_quarantined_share', 0.5) if max_share is none else max_share) | float %}
{%- set warn_share = (var('warn_quarantined_share', 0.05) if warn_share is none else warn_share) | float %}
{{ config(warn_if='> 0', error_if='> 0 and max(quarantined_share) > ' ~ max_share) }}
with

quarantined as (
    select * from {{ model }}
),

table_rows as (
    select
        source_table,
        sum({{ rows_column }}) as table_rows
    from {{ table_rows }}
    group by source_table
),

by_rule as (
    select
        source_table,
        rejection_rule,
        count(*) as rule_rows,
        min(rejection_reason) as sample_reason,
        min(record_key) as sample_record_key
    from quarantined
    group by source_table, rejection_rule
),

ranked as (
    select
        *,
        sum(rule_rows) over (partition by source_table) as quarantined_rows,
        row_number() over (partition by source_table order by rule_rows desc, rejection_rule asc) as rule_rank
    from by_rule
),

shares as (
    select
        ranked.source_table,
        coalesce(table_rows.table_rows, 0) as table_rows,
        ranked.quarantined_rows,
        1.0 * ranked.quarantined_rows / nullif(table_rows.table_rows, 0) as quarantined_share,
        ranked.rejection_rule as top_rule,
        ranked.rule_rows as top_rule_rows,
        ranked.sample_reason,
        ranked.sample_record_key
    from ranked
    left join table_rows
        on ranked.source_table = table_rows.source_table
    where ranked.rule_rank = 1
),

breaches as (
    select
        *,
        {{ max_share }} as max_share,
        {{ warn_share }} as warn_share,
        quarantined_share > {{ max_share }} as is_above_max_share
    from shares
    where quarantined_share > {{ warn_share }}
)

select
    *,
    'quarantined_share_below: ' || source_table || ' has ' || cast(quarantined_rows as {{ dbt.type_string() }})
    || ' of its ' || cast(table_rows as {{ dbt.type_string() }}) || ' rows quarantined ('
    || cast(round(100 * quarantined_share, 1) as {{ dbt.type_string() }}) || '%, '
    || case when is_above_max_share then 'above the error threshold ' else 'above the warning threshold ' end
    || cast(round(100 * (case when is_above_max_share then max_share else warn_share end), 1) as {{ dbt.type_string() }})
    || '%); top rule ' || top_rule || ' (' || cast(top_rule_rows as {{ dbt.type_string() }}) || ' rows), e.g. '
    || coalesce(sample_record_key, '(no key)') || ': ' || sample_reason
    || ' (vars max_quarantined_share / warn_quarantined_share)' as failure_message
from breaches
{% endtest %}
