{#-
    The stream's raw tables (`raw_stream`, loaded by realtime/consumer.py) exist only once the
    real-time consumer has loaded something: a warehouse that never ran the stream reads them as
    empty tables of the contract's columns, so every build works without it.
-#}

{#- relation_exists(relation): whether the warehouse holds `relation`; true while parsing and without
    introspection (the credential-free BigQuery compile check), where the SQL reading it is compiled -#}
{% macro relation_exists(relation) -%}
    {%- if not execute or not flags.INTROSPECT -%}
        {{ return(true) }}
    {%- endif -%}
    {{ return(load_relation(relation) is not none) }}
{%- endmacro %}


{#- stream_rows(raw, loads, columns): the rows of the stream's table `raw` of completed dlt loads
    (`loads`: its `_dlt_loads`), or, before the consumer ever loaded one, no rows with `columns` and
    dlt's `_dlt_load_id`, `_dlt_id` (all text) -#}
{% macro stream_rows(raw, loads, columns) -%}
    {%- if relation_exists(raw) and relation_exists(loads) -%}
        select * from {{ raw }}
        where _dlt_load_id in ({{ completed_loads(loads) }})
    {%- else -%}
        select
            {%- for column in columns + ['_dlt_load_id', '_dlt_id'] %}
                cast(null as {{ dbt.type_string() }}) as {{ column }}{{ ',' if not loop.last }}
            {%- endfor %}
        where false
    {%- endif -%}
{%- endmacro %}


{#- create_stream_tables(): an on-run-start hook (DuckDB): the stream's raw tables, empty, when the
    real-time consumer has not created them yet, in the shape its dlt pipeline loads (the contract's
    columns and the message id as text, dlt's columns and `_dlt_loads`). So the staging views always
    read the real tables: a view built before the consumer first ran would otherwise read nothing
    until the next build. dlt loads into them as into its own (it adds only what is missing). -#}
{% macro create_stream_tables() -%}
    {%- if target.type != 'duckdb' -%}
        {{ return('') }}
    {%- endif -%}
    {%- set tables = {
        'transactions': ['transaction_id', 'user_id', 'amount', 'currency', 'status', 'device_type',
            'created_at', 'updated_at'],
        'events': ['event_id', 'user_id', 'session_id', 'event_type', 'device_type', 'occurred_at', 'properties'],
        'dead_letters': ['kind', 'record_key', 'record', 'problems', 'rejection_rule', 'rejection_reason',
            'received_at'],
    } -%}
    create schema if not exists raw_stream;
    create table if not exists raw_stream._dlt_loads (
        load_id varchar not null,
        schema_name varchar,
        status bigint not null,
        inserted_at timestamp with time zone not null,
        schema_version_hash varchar
    );
    {%- for table, columns in tables.items() %}
        create table if not exists raw_stream.{{ table }} (
            {%- for column in columns + ['_stream_message_id'] %}
                {{ column }} varchar,
            {%- endfor %}
            _dlt_id varchar not null,
            _dlt_load_id varchar not null
        );
    {%- endfor %}
{%- endmacro %}
