-- one row per raw row of `raw_stream.transactions` (completed dlt loads), typed exactly as
-- stg_app__transactions types the app's rows: int_transactions_validated deduplicates and validates
-- both together. The consumer loads a stream message once (its id is unique here: tested).
{%- set amount = safe_to_decimal('amount') %}
{%- set created_at = safe_to_timestamp('created_at') %}
with

source as (
    {{ stream_rows(source('stream', 'transactions'), source('stream', '_dlt_loads'), [
        'transaction_id', 'user_id', 'amount', 'currency', 'status', 'device_type', 'created_at', 'updated_at',
        '_stream_message_id'
    ]) }}
),

typed as (
    select
        ---------- ids
        {{ safe_to_key('transaction_id') }} as transaction_id,
        {{ safe_to_key('user_id') }} as user_id,
        ---------- numerics
        {{ amount }} as amount,
        ---------- text
        upper(trim(currency)) as currency,
        lower(trim(status)) as status,
        lower(trim(device_type)) as device_type,
        ---------- timestamps (utc)
        {{ created_at }} as created_at,
        {{ safe_to_timestamp('updated_at') }} as updated_at,
        ---------- raw values kept for quarantine reasons
        amount as raw_amount,
        created_at as raw_created_at,
        ---------- flags: the source gave a value the safe cast could not read (it became null)
        amount is not null and {{ amount }} is null as is_amount_unparseable,
        created_at is not null and {{ created_at }} is null as is_created_at_unparseable,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id,
        'stream.transactions' as source_table,
        _stream_message_id as source_message_id
    from source
)

select * from typed
