with

source as (
    select * from {{ source('fx', 'rates') }}
    where _dlt_load_id in ({{ completed_loads(source('fx', '_dlt_loads')) }})
),

renamed as (
    select
        ---------- keys
        {{ try_cast_as('cast(' ~ adapter.quote('date') ~ ' as ' ~ dbt.type_string() ~ ')', 'date') }} as rate_date,
        upper(trim(currency)) as currency,
        ---------- numerics
        {{ try_cast_as('cast(rate_to_usd as ' ~ dbt.type_string() ~ ')', type_double()) }} as rate_to_usd,
        ---------- raw values kept for quarantine reasons
        cast({{ adapter.quote('date') }} as {{ dbt.type_string() }}) as raw_rate_date,
        cast(rate_to_usd as {{ dbt.type_string() }}) as raw_rate_to_usd,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id
    from source
)

select * from renamed
