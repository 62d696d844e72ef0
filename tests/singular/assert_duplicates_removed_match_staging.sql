-- Over a whole raw table, the raw rows staging did not keep (row_reconciliation.duplicates_removed)
-- are exactly the duplicates staging says it collapsed (rows_in_raw - 1 on the kept rows). Per load
-- the two differ when a duplicate spans loads; over the table any difference is a row staging
-- dropped for another reason than a duplicate key, or a duplicate it miscounted. A batch source's
-- table and the stream's of the same records are deduplicated together (a pushed transaction can
-- repeat one of the app's): they are compared as one.
with

reconciliation as (
    select * from {{ ref('row_reconciliation') }}
),

per_table as (
    select
        case source_table
            when 'stream.transactions' then 'app.transactions'
            when 'stream.events' then 'events.events'
            else source_table
        end as source_table,
        sum(duplicates_removed) as duplicates_removed,
        sum(duplicates_counted_by_staging) as duplicates_counted_by_staging
    from reconciliation
    group by 1
)

select *
from per_table
where duplicates_removed != duplicates_counted_by_staging
