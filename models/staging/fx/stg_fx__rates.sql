with

source as (
    select * from {{ source('fx', 'rates') }}
    where _dlt_load_id in ({{ completed_loads('fx') }})
),

renamed as (
    select
        ---------- keys
        cast({{ adapter.quote('date') }} as date) as rate_date,
        upper(trim(currency)) as currency,
        ---------- numerics
        cast(rate_to_usd as {{ dbt.type_float() }}) as rate_to_usd,
        ---------- lineage
        _dlt_load_id as source_load_id
    from source
)

select * from renamed
