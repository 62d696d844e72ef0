-- one row per chargebacks file the extract could not read (completed loads only): its path, the reason,
-- its size and modification time; each becomes one quarantine row (unreadable_file)
with

source as (
    select * from {{ source('chargebacks', 'rejected_files') }}
    where _dlt_load_id in ({{ completed_loads(source('chargebacks', '_dlt_loads')) }})
),

renamed as (
    select
        ---------- ids
        cast(path as {{ dbt.type_string() }}) as file_path,
        ---------- text
        cast(reason as {{ dbt.type_string() }}) as rejection_reason,
        ---------- numerics
        cast(size as {{ dbt.type_bigint() }}) as file_size_bytes,
        ---------- timestamps (utc)
        cast(modification_date as {{ dbt.type_timestamp() }}) as file_modified_at,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id
    from source
)

select * from renamed
