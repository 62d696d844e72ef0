-- one row per raw row of a completed dlt load, typed. dlt merges on transaction_id, so an id has
-- one raw row but for rows without a usable id; int_transactions_validated keeps the latest version
-- of each id all the same (the same deduplication as the other tables), incrementally.
-- Keys are text (safe_to_key). A value the app reader could not convert to its column's type is in
-- the variant column `<column>__v_text` (raw_text reads it): it is typed or quarantined from there.
{%- set raw_transactions = source('app', 'transactions') %}
{%- set amount_variant = column_or_null(raw_transactions, 'amount__v_text', dbt.type_string()) %}
{%- set created_at_variant = column_or_null(raw_transactions, 'created_at__v_text', dbt.type_string()) %}
{%- set updated_at_variant = column_or_null(raw_transactions, 'updated_at__v_text', dbt.type_string()) %}
{#- the typed column is cast as it is (no printing and parsing again), its variant only where it is null -#}
{%- set amount = 'coalesce(' ~ safe_to_decimal('amount') ~ ', ' ~ safe_to_decimal(amount_variant) ~ ')' %}
{%- set created_at = 'coalesce(' ~ safe_to_timestamp('created_at') ~ ', '
    ~ safe_to_timestamp(created_at_variant) ~ ')' %}
{%- set updated_at = 'coalesce(' ~ safe_to_timestamp('updated_at') ~ ', '
    ~ safe_to_timestamp(updated_at_variant) ~ ')' %}
with

source as (
    select * from {{ raw_transactions }}
    where _dlt_load_id in ({{ completed_loads(source('app', '_dlt_loads')) }})
),

typed as (
    select
        ---------- ids
        {{ safe_to_key(raw_text(raw_transactions, 'transaction_id')) }} as transaction_id,
        {{ safe_to_key(raw_text(raw_transactions, 'user_id')) }} as user_id,
        ---------- numerics
        {{ amount }} as amount,
        ---------- text
        upper(trim(currency)) as currency,
        lower(trim(status)) as status,
        lower(trim(device_type)) as device_type,
        ---------- timestamps (utc)
        {{ created_at }} as created_at,
        {{ updated_at }} as updated_at,
        ---------- raw values kept for quarantine reasons
        {{ raw_text(raw_transactions, 'amount') }} as raw_amount,
        {{ raw_text(raw_transactions, 'created_at') }} as raw_created_at,
        ---------- flags: the source gave a value the safe cast could not read (it became null)
        {{ raw_text(raw_transactions, 'amount') }} is not null and {{ amount }} is null as is_amount_unparseable,
        {{ raw_text(raw_transactions, 'created_at') }} is not null
        and {{ created_at }} is null as is_created_at_unparseable,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id,
        'app.transactions' as source_table,
        cast(null as {{ dbt.type_string() }}) as source_message_id
    from source
)

select * from typed
