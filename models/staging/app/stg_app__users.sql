with

source as (
    select * from {{ source('app', 'users') }}
    where _dlt_load_id in ({{ completed_loads('app') }})
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
        _dlt_id as source_row_id
    from source
),

ranked as (
    select
        *,
        -- rows without a usable key are never collapsed together: each stays for quarantine
        count(*) over (partition by user_id, case when user_id is null then source_row_id end)
            as rows_in_raw,
        row_number() over (
            partition by user_id, case when user_id is null then source_row_id end
            order by updated_at desc nulls last, source_load_id desc, source_row_id asc
        ) as version_rank
    from typed
),

deduplicated as (
    select {{ star_except(["version_rank"]) }}
    from ranked
    where version_rank = 1
)

select * from deduplicated
