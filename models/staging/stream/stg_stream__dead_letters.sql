-- one row per record the ingestion service rejected (`raw_stream.dead_letters`, completed dlt loads):
-- the record as it was sent, the first rule it broke and every reason; each becomes one row of
-- int_quarantined_rows, of the stream table it was sent to
with

source as (
    {{ stream_rows(source('stream', 'dead_letters'), source('stream', '_dlt_loads'), [
        'kind', 'record_key', 'record', 'problems', 'rejection_rule', 'rejection_reason', 'received_at',
        '_stream_message_id'
    ]) }}
),

renamed as (
    select
        ---------- ids
        {{ safe_to_key('record_key') }} as record_key,
        ---------- text
        'stream.' || kind as source_table,
        record as raw_record,
        problems,
        rejection_rule,
        rejection_reason,
        ---------- timestamps (utc)
        {{ safe_to_timestamp('received_at') }} as received_at,
        ---------- lineage
        _dlt_load_id as source_load_id,
        _dlt_id as source_row_id,
        _stream_message_id as source_message_id
    from source
)

select * from renamed
