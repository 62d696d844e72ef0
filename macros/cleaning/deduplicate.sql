{#-
    deduplicate_transactions(where), deduplicate_events(where): the staged rows, one per id, the
    way every reader decides between versions and deliveries: the latest version of a transaction
    (greatest updated_at, then the latest load), the first delivery of an event (earliest load, then
    batch file). `where` (optional) keeps only some ids; see keep_one_per_key. Used by the
    incremental int_transactions_validated / int_events_validated and by the speed layer of
    realtime_transaction_features.
-#}
{% macro deduplicate_transactions(where=none) %}
    {{ keep_one_per_key(
        ref('stg_app__transactions'),
        key='transaction_id',
        order_by='updated_at desc nulls last, source_load_id desc, source_row_id asc',
        row_id='source_row_id',
        where=where
    ) }}
{% endmacro %}


{% macro deduplicate_events(where=none) %}
    {{ keep_one_per_key(
        ref('stg_events__events'),
        key='event_id',
        order_by='source_load_id, source_batch_file, source_row_id',
        row_id='source_row_id',
        where=where
    ) }}
{% endmacro %}
