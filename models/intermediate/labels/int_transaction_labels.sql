-- one row per transaction that has a valid chargeback: when it was first reported and why
with

chargebacks as (
    select * from {{ ref('int_chargebacks_validated') }}
    where rejection_rule is null and is_first_report
),

labels as (
    select
        transaction_id,
        reported_at as first_reported_at,
        reason as chargeback_reason,
        source_load_id
    from chargebacks
)

select * from labels
