-- one row per rejected source row: which table, the rule it broke, a readable reason,
-- the dlt load it came in and its raw values. Nothing is dropped silently. A file the extract could
-- not read (raw_<source>.rejected_files) is one row of the table its rows were for, keyed by its path.
-- Transactions and events come from their batch source or the stream (source_table; a row validated
-- before the column existed is the batch source's). A record the ingestion service rejected (a dead
-- letter) is one row of the stream table it was sent to, with the service's rule and every reason,
-- rejected_by 'ingestion_service' (its sender was answered 422); every other row 'warehouse'.
with

transactions as (
    select * from {{ ref('int_transactions_validated') }}
    where rejection_rule is not null
),

events as (
    select * from {{ ref('int_events_validated') }}
    where rejection_rule is not null
),

chargebacks as (
    select * from {{ ref('int_chargebacks_validated') }}
    where rejection_rule is not null
),

fx_rates as (
    select * from {{ ref('int_fx_rates_validated') }}
    where rejection_rule is not null
),

users as (
    select * from {{ ref('stg_app__users') }}
    where user_id is null
),

rejected_event_files as (
    select * from {{ ref('stg_events__rejected_files') }}
),

rejected_chargeback_files as (
    select * from {{ ref('stg_chargebacks__rejected_files') }}
),

dead_letters as (
    select * from {{ ref('stg_stream__dead_letters') }}
),

unioned as (
    select
        coalesce(source_table, 'app.transactions') as source_table,
        cast(transaction_id as {{ dbt.type_string() }}) as record_key,
        rejection_rule,
        rejection_reason,
        source_load_id,
        source_row_id,
        'warehouse' as rejected_by,
        'user_id=' || coalesce(cast(user_id as {{ dbt.type_string() }}), 'null')
        || '; amount=' || coalesce(raw_amount, 'null')
        || '; currency=' || coalesce(currency, 'null')
        || '; created_at=' || coalesce(raw_created_at, 'null') as raw_values
    from transactions

    union all

    select
        coalesce(source_table, 'events.events') as source_table,
        event_id as record_key,
        rejection_rule,
        rejection_reason,
        source_load_id,
        source_row_id,
        'warehouse' as rejected_by,
        'user_id=' || coalesce(cast(user_id as {{ dbt.type_string() }}), 'null')
        || '; event_type=' || coalesce(event_type, 'null') as raw_values
    from events

    union all

    select
        'chargebacks.chargebacks' as source_table,
        raw_transaction_id as record_key,
        rejection_rule,
        rejection_reason,
        source_load_id,
        source_row_id,
        'warehouse' as rejected_by,
        'transaction_id=' || coalesce(raw_transaction_id, 'null')
        || '; reported_at=' || coalesce(raw_reported_at, 'null')
        || '; reason=' || coalesce(reason, 'null') as raw_values
    from chargebacks

    union all

    select
        'app.users' as source_table,
        cast(null as {{ dbt.type_string() }}) as record_key,
        'missing_key' as rejection_rule,
        'user_id is missing' as rejection_reason,
        source_load_id,
        source_row_id,
        'warehouse' as rejected_by,
        'name=' || coalesce(raw_name, 'null') || '; email=' || coalesce(raw_email, 'null') as raw_values
    from users

    union all

    select
        'fx.rates' as source_table,
        coalesce(raw_rate_date, 'null') || '/' || coalesce(currency, 'null') as record_key,
        rejection_rule,
        rejection_reason,
        source_load_id,
        source_row_id,
        'warehouse' as rejected_by,
        'date=' || coalesce(raw_rate_date, 'null') || '; currency=' || coalesce(currency, 'null')
        || '; rate_to_usd=' || coalesce(raw_rate_to_usd, 'null') as raw_values
    from fx_rates

    union all

    select
        source_table,
        record_key,
        rejection_rule,
        rejection_reason,
        source_load_id,
        source_row_id,
        'ingestion_service' as rejected_by,
        'record=' || coalesce(raw_record, 'null') as raw_values
    from dead_letters

    union all

    {%- set rejected_files = [
        ('events.events', 'rejected_event_files'),
        ('chargebacks.chargebacks', 'rejected_chargeback_files'),
    ] %}
    {%- for source_table, files in rejected_files %}
        select
            '{{ source_table }}' as source_table,
            file_path as record_key,
            'unreadable_file' as rejection_rule,
            'file ' || file_path || ' cannot be read: '
            || coalesce(rejection_reason, 'no reason given') as rejection_reason,
            source_load_id,
            source_row_id,
            'warehouse' as rejected_by,
            'size=' || coalesce(cast(file_size_bytes as {{ dbt.type_string() }}), 'null')
            || '; modified_at=' || coalesce(cast(file_modified_at as {{ dbt.type_string() }}), 'null') as raw_values
        from {{ files }}
        {% if not loop.last %}
            union all
        {% endif %}
    {%- endfor %}
)

select * from unioned
