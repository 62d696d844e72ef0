-- one row per raw table, rejection rule and dlt load: how many rows the quarantine holds, their
-- share of the rows staging kept from that load, and one example reason and key to start from
with

quarantined as (
    select * from {{ ref('int_quarantined_rows') }}
),

reconciliation as (
    select * from {{ ref('row_reconciliation') }}
),

summarised as (
    select
        source_table,
        rejection_rule,
        source_load_id,
        count(*) as quarantined_rows,
        min(rejection_reason) as example_reason,
        min(record_key) as example_record_key
    from quarantined
    group by source_table, rejection_rule, source_load_id
),

with_share as (
    select
        summarised.source_table,
        summarised.rejection_rule,
        summarised.source_load_id,
        summarised.quarantined_rows,
        reconciliation.staged_rows,
        1.0 * summarised.quarantined_rows / nullif(reconciliation.staged_rows, 0) as share_of_staged_rows,
        summarised.example_reason,
        summarised.example_record_key
    from summarised
    left join reconciliation
        on
            summarised.source_table = reconciliation.source_table
            and summarised.source_load_id = reconciliation.source_load_id
)

select * from with_share
