{#-
    deduplicate_transactions(recheck), deduplicate_events(recheck): the staged rows, one per id, the
    way every reader decides between versions and deliveries: the latest version of a transaction
    (greatest updated_at, then the latest load), the first delivery of an event (earliest load, then
    batch file). Used by int_transactions_validated / int_events_validated (incrementally, see
    one_per_key_since_last_build) and by the speed layer of realtime_transaction_features (all rows).
    Each reads the batch source's staging view and the stream's (records pushed to the real-time
    ingestion service) together: a key is decided over both.
-#}
{% macro deduplicate_transactions(recheck=none) %}
    {{ one_per_key_since_last_build(
        [ref('stg_app__transactions'), ref('stg_stream__transactions')],
        key='transaction_id',
        order_by='updated_at desc nulls last, source_load_id desc, source_row_id asc',
        recheck=recheck
    ) }}
{% endmacro %}


{% macro deduplicate_events(recheck=none) %}
    {#- raw events are append-only: dlt appends every delivery and never deletes one -#}
    {{ one_per_key_since_last_build(
        [ref('stg_events__events'), ref('stg_stream__events')],
        key='event_id',
        order_by='source_load_id, source_batch_file, source_row_id',
        recheck=recheck,
        append_only=true
    ) }}
{% endmacro %}


{#-
    one_per_key_since_last_build(staged, key, order_by, recheck): keep_one_per_key over a staging
    view (columns source_load_id, source_row_id), or a list of staging views with the same documented
    columns (read as their union), for a model that holds its result.

    A full build reads every staged row. An incremental run decides again only the keys of the rows
    loaded since the newest load the model has read (last_load_built), and the rows of the model that `recheck` (SQL over
    its columns) names, each on all of its raw rows, without computing the staging view's casts for
    the rows it does not need (DuckDB evaluates a view's columns before a join filters its rows):
      * the new rows, by a filter on the load id (a constant: it reaches the raw table's scan);
      * for each key also loaded before: the row the model kept, while its raw row is still there
        (it is still the first of the earlier rows), standing for all of that key's earlier raw rows,
        which are counted from the key and row id columns alone. Should that raw row be gone, the
        key's earlier rows are read again (never the case with dlt, which removes a replaced row
        only when it loads the new version).
    When the raw table is append-only (`append_only`: its loads never lose a row), a key's earlier raw
    rows are exactly the ones the model's kept row counts (`rows_in_raw`), and the kept row is still
    the first of them: that row stands for them with its count and the staged rows of earlier loads
    are not read at all (10M transactions, 50M events: 17 s -> 1.7 s for a new day's events).
    The result is what a full build gives for those keys: the model replaces them (unique_key).
-#}
{% macro one_per_key_since_last_build(staged, key, order_by, recheck=none, append_only=false) %}
    {%- set views = staged if staged is not string and staged is iterable and staged is not mapping
        and not staged.identifier else [staged] -%}
    {#- while parsing, ref() gives no real relation and the SQL is not run -#}
    {#- nor in a unit test (no graph of nodes): there the views' columns, in the same order, are read -#}
    {%- set columns = documented_columns(views[0]) if execute and graph.get('nodes') else ['*'] -%}
    {%- set staged = union_of(views, columns) -%}
    {%- if not is_incremental() -%}
        {{ keep_one_per_key(staged, key=key, order_by=order_by, row_id='source_row_id', newest_load='source_load_id') }}
    {%- else -%}
        {%- set last_load_id = last_load_built() -%}
        {%- set kept_columns = columns_built(columns) -%}
        {#- a table built before newest_load_id existed: the kept row's own load stands in, once -#}
        {%- set kept_newest_load = 'kept.newest_load_id' if has_newest_load_id() else 'kept.source_load_id' -%}
        select *
        from (
            with

            new_rows as (
                select
                    {{ columns | join(', ') }},
                    source_load_id as newest_load_id
                from {{ staged }}
                where source_load_id > '{{ last_load_id }}'
            ),

            keys_to_decide as (
                select {{ key }} as decided_key
                from new_rows
                where {{ key }} is not null
                {%- if recheck %}

                union distinct

                select {{ key }} as decided_key
                from {{ this }}
                where {{ key }} is not null and ({{ recheck }})
                {%- endif %}
            ),

            {%- if not append_only %}

            earlier_rows as (
                select
                    {{ key }} as decided_key,
                    source_row_id
                from {{ staged }}
                where
                    source_load_id <= '{{ last_load_id }}'
                    and {{ key }} in (select keys_to_decide.decided_key from keys_to_decide)
            ),

            earlier_counts as (
                select
                    decided_key,
                    count(*) as earlier_rows
                from earlier_rows
                group by decided_key
            ),
            {%- endif %}

            -- the row kept for a key loaded before, standing for its earlier raw rows
            kept_earlier as (
                select
                    {%- for column in columns %}
                        {{ 'kept.' ~ column if column in kept_columns else 'null as ' ~ column }},
                    {%- endfor %}
                    {{ kept_newest_load }} as newest_load_id,
                    {{ 'kept.rows_in_raw' if append_only else 'earlier_counts.earlier_rows' }} as raw_rows
                from {{ this }} as kept
                {%- if append_only %}
                where kept.{{ key }} in (select keys_to_decide.decided_key from keys_to_decide)
                {%- else %}
                inner join earlier_counts
                    on kept.{{ key }} = earlier_counts.decided_key
                where kept.source_row_id in (select earlier_rows.source_row_id from earlier_rows)
                {%- endif %}
            ),
            {%- if not append_only %}

            -- keys whose kept raw row is gone although earlier rows remain: those rows, read again
            earlier_rows_read_again as (
                select
                    {%- for column in columns %}
                        staged_again.{{ column }},
                    {%- endfor %}
                    staged_again.source_load_id as newest_load_id,
                    1 as raw_rows
                from {{ staged }} as staged_again
                where staged_again.source_row_id in (
                    select earlier_rows.source_row_id
                    from earlier_rows
                    where earlier_rows.decided_key not in (select kept_earlier.{{ key }} from kept_earlier)
                )
            ),
            {%- endif %}

            candidates as (
                select
                    new_rows.*,
                    1 as raw_rows
                from new_rows

                union all

                select * from kept_earlier
                {%- if not append_only %}

                union all

                select * from earlier_rows_read_again
                {%- endif %}
            )

            {{ keep_one_per_key(
                'candidates', key=key, order_by=order_by, row_id='source_row_id', weight='raw_rows', columns=columns,
                newest_load='newest_load_id'
            ) }}
        ) as decided
    {%- endif -%}
{% endmacro %}


{#- the newest dlt load id the incremental model being built has read, as text ('' when it is empty, or
    on a full build): the greatest newest_load_id, the newest load that delivered a row of a key the
    model holds. Not the newest load of a row it kept: a load whose rows were all duplicates (an event
    file delivered again) holds no kept row, and would be read, and counted, again on every run -#}
{% macro last_load_built() -%}
    {#- without introspection (the credential-free BigQuery compile check) there is no table to ask -#}
    {%- if not execute or not is_incremental() or not flags.INTROSPECT -%}
        {{ return('') }}
    {%- endif -%}
    {%- set newest = 'newest_load_id' if has_newest_load_id() else 'source_load_id' -%}
    {%- set result = run_query('select coalesce(max(' ~ newest ~ '), \'\') from ' ~ this) -%}
    {{ return(result.columns[0].values()[0]) }}
{%- endmacro %}


{#- whether the incremental model being built has its newest_load_id column yet (a table built before
    it existed gets it on this run: on_schema_change) -#}
{% macro has_newest_load_id() -%}
    {%- if not flags.INTROSPECT -%}
        {{ return(true) }}
    {%- endif -%}
    {{ return('newest_load_id' in adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list) }}
{%- endmacro %}


{#- union_of(views, columns): one view as it is, or a subquery of the union of `views` (their `columns`) -#}
{% macro union_of(views, columns) -%}
    {%- if views | length == 1 -%}
        {{ return(views[0]) }}
    {%- endif -%}
    {%- set selects = [] -%}
    {%- for view in views -%}
        {%- do selects.append('select ' ~ columns | join(', ') ~ ' from ' ~ view) -%}
    {%- endfor -%}
    {{ return('(' ~ selects | join(' union all ') ~ ')') }}
{%- endmacro %}


{#- columns_built(columns): those of `columns` the incremental model being built holds already (a table
    built before a column was added gets it on this run: on_schema_change); all without introspection -#}
{% macro columns_built(columns) -%}
    {%- if not flags.INTROSPECT -%}
        {{ return(columns) }}
    {%- endif -%}
    {%- set existing = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {{ return(columns | select('in', existing) | list) }}
{%- endmacro %}


{#- the columns of a model as its YAML documents them (every column is documented: ci/check_docs_coverage.py) -#}
{% macro documented_columns(relation) -%}
    {%- set node = node_built_as(relation) -%}
    {%- if not node -%}
        {{ exceptions.raise_compiler_error('documented_columns: no model is built as ' ~ relation) }}
    {%- endif -%}
    {{ return(node.columns.keys() | list) }}
{%- endmacro %}
