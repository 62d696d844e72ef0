-- users change after insert: the latest version of a user id is kept (the latest updated_at, then
-- the latest load), rows_in_raw counts them all. Keys are text (safe_to_key); a value the app reader
-- could not convert to its column's type is read from its variant column (raw_text).
{%- set raw_users = source('app', 'users') %}
{%- set user_id = safe_to_key(raw_text(raw_users, 'user_id')) %}
{%- set age_variant = column_or_null(raw_users, 'age__v_text', dbt.type_string()) %}
{%- set signup_at_variant = column_or_null(raw_users, 'signup_at__v_text', dbt.type_string()) %}
{%- set updated_at_variant = column_or_null(raw_users, 'updated_at__v_text', dbt.type_string()) %}
{%- set updated_at = 'coalesce(' ~ safe_to_timestamp('updated_at') ~ ', '
    ~ safe_to_timestamp(updated_at_variant) ~ ')' %}
with

deduplicated as (
    {{ keep_one_per_key(
        raw_users,
        key=user_id,
        order_by=updated_at ~ ' desc nulls last, _dlt_load_id desc, _dlt_id asc',
        row_id='_dlt_id',
        where='_dlt_load_id in (' ~ completed_loads(source('app', '_dlt_loads')) ~ ')'
    ) }}
),

typed as (
    select
        ---------- ids
        {{ user_id }} as user_id,
        ---------- text as given (cleaned in intermediate)
        name as raw_name,
        email as raw_email,
        country as raw_country,
        {{ column_or_null(raw_users, 'loyalty_tier', dbt.type_string()) }} as raw_loyalty_tier,
        ---------- numerics
        coalesce({{ safe_to_integer('age') }}, {{ safe_to_integer(age_variant) }}) as age,
        ---------- timestamps (utc)
        coalesce({{ safe_to_timestamp('signup_at') }}, {{ safe_to_timestamp(signup_at_variant) }}) as signup_at,
        {{ updated_at }} as updated_at,
        ---------- raw values kept for quarantine reasons
        {{ raw_text(raw_users, 'signup_at') }} as raw_signup_at,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id,
        ---------- deduplication
        rows_in_raw
    from deduplicated
)

select * from typed
