-- one row per valid transaction: every feature computed only from what was known strictly before
-- the transaction's timestamp, the fitted preprocessing applied, and the label with its maturity.
-- The expensive history windows come from the incremental int_transactions_windowed; this table
-- only joins what changes after a row is written (labels mature, parameters are refitted).
with

windowed as (
    select * from {{ ref('int_transactions_windowed') }}
),

features as (
    {{ transaction_features('windowed') }}
)

select * from features
