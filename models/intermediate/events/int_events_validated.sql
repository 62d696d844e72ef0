-- one row per distinct event with the first validation rule it fails (null when valid).
-- A table, read by the features, the quarantine, the monitoring and the tests (the rules:
-- macros/cleaning/validate_events.sql).
with

events as (
    select * from {{ ref('stg_events__events') }}
),

validated as (
    {{ validate_events('events') }}
)

select * from validated
