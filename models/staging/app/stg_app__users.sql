-- users change after insert: the latest version of a user id is kept (the latest updated_at, then
-- the latest load), rows_in_raw counts them all.
with

deduplicated as (
    {{ keep_one_per_key(
        source('app', 'users'),
        key=safe_to_integer('user_id'),
        order_by=safe_to_timestamp('updated_at') ~ ' desc nulls last, _dlt_load_id desc, _dlt_id asc',
        row_id='_dlt_id',
        where='_dlt_load_id in (' ~ completed_loads('app') ~ ')'
    ) }}
),

typed as (
    select
        ---------- ids
        {{ safe_to_integer('user_id') }} as user_id,
        ---------- text as given (cleaned in intermediate)
        name as raw_name,
        email as raw_email,
        country as raw_country,
        {{ column_or_null(source('app', 'users'), 'loyalty_tier', dbt.type_string()) }} as raw_loyalty_tier,
        ---------- numerics
        {{ safe_to_integer('age') }} as age,
        ---------- timestamps (utc)
        {{ safe_to_timestamp('signup_at') }} as signup_at,
        {{ safe_to_timestamp('updated_at') }} as updated_at,
        ---------- raw values kept for quarantine reasons
        cast(signup_at as {{ dbt.type_string() }}) as raw_signup_at,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id,
        ---------- deduplication
        rows_in_raw
    from deduplicated
)

select * from typed
