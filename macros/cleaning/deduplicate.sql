{#-
    deduplicate_transactions(staged, recheck), deduplicate_events(staged, recheck): the staged rows, one
    per id, the way every reader decides between versions and deliveries: the latest version of a
    transaction (greatest updated_at, then the latest load), the first delivery of an event (earliest
    load, then batch file). Used by int_transactions_validated / int_events_validated (incrementally,
    see one_per_key_since_last_build) and by the speed layer of realtime_transaction_features (the
    keys those tables would decide again now: `built` is the table). `staged` is the list of staging
    views the caller reads, the batch source's and the stream's (records pushed to the real-time
    ingestion service), read together: a key is decided over both. They are relations (ref()s in the
    model's file), not CTE names: the SQL reads each several times, and DuckDB would materialize a
    CTE read more than once whole, before the load-id filter could reach the raw table's scan.
-#}
{% macro deduplicate_transactions(staged, recheck=none, built=none) %}
    {{ one_per_key_since_last_build(
        staged,
        key='transaction_id',
        order_by='updated_at desc nulls last, source_load_id desc, source_row_id asc',
        recheck=recheck,
        built=built
    ) }}
{% endmacro %}


{#- deduplicate_events(staged, recheck, columns): `columns` of the staging views (default: all; the
    order columns source_load_id, source_batch_file and source_row_id are needed) -#}
{% macro deduplicate_events(staged, recheck=none, columns=none, built=none) %}
    {#- raw events are append-only: dlt appends every delivery and never deletes one -#}
    {{ one_per_key_since_last_build(
        staged,
        key='event_id',
        order_by='source_load_id, source_batch_file, source_row_id',
        recheck=recheck,
        append_only=true,
        columns=columns,
        built=built
    ) }}
{% endmacro %}


{#-
    transactions_recheck(built, rates), events_recheck(): the `recheck` of int_transactions_validated
    and int_events_validated, SQL over `built` (the table, shaped like the model) naming its rows to
    decide again although no new load delivered their key: the transactions quarantined for an
    unknown user, an unknown currency or a missing rate (a user, or a currency's rates, may have
    arrived since), and those dated on or after a rate of a newer FX load (`rates`, stg_fx__rates)
    than any rate the table used; the events quarantined for an unknown user. One definition for the
    models and the speed layer of realtime_transaction_features.
-#}
{% macro transactions_recheck(built, rates) -%}
    {#- a table built before rate_source_load_id existed: every rate counts as new, once -#}
    {%- set has_rate_loads = 'rate_source_load_id' in columns_built(['rate_source_load_id'], built) -%}
    rejection_rule in ('unknown_user', 'unknown_currency', 'missing_fx_rate')
    or cast(created_at as date) >= (
        select min(rates.rate_date) from {{ rates }} as rates
        where rates.source_load_id > (
            {{ "select max(used.rate_source_load_id) from " ~ built ~ " as used" if has_rate_loads else "select ''" }}
        )
    )
{%- endmacro %}


{% macro events_recheck() -%}
    rejection_rule = 'unknown_user'
{%- endmacro %}


{#-
    one_per_key_since_last_build(staged, key, order_by, recheck, append_only, columns, built): keep_one_per_key
    over a staging view (columns source_load_id, source_row_id), or a list of staging views with the
    same documented columns (read as their union), for a model that holds its result: `columns` of
    them (default: every documented column; a model that holds fewer writes less).
    `built` is the table holding the earlier decisions: by default the incremental model being built
    (`this`), none on a full build; the speed layer of realtime_transaction_features passes the
    built table, and gets the keys an incremental run would decide again now, decided as it would.

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
    are not read at all.
    The result is what a full build gives for those keys: the model replaces them (unique_key).
    Read later than built (a view, `built` given): the newest load the table holds at query time
    bounds the new rows too, so rows the table took in since the SQL was compiled are not taken twice.
-#}
{% macro one_per_key_since_last_build(
    staged, key, order_by, recheck=none, append_only=false, columns=none, built=none
) %}
    {%- set views = staged if staged is not string and staged is iterable and staged is not mapping
        and not staged.identifier else [staged] -%}
    {#- while parsing, ref() gives no real relation and the SQL is not run -#}
    {#- nor in a unit test (no graph of nodes): there the views' columns, in the same order, are read -#}
    {%- set columns = columns or (documented_columns(views[0]) if execute and graph.get('nodes') else ['*']) -%}
    {%- set staged = union_of(views, columns) -%}
    {%- set read_later = built is not none -%}
    {%- set built = built if read_later else (this if is_incremental() else none) -%}
    {%- if built is none -%}
        {{ keep_one_per_key(staged, key=key, order_by=order_by, row_id='source_row_id', newest_load='source_load_id') }}
    {%- else -%}
        {%- set last_load_id = last_load_built(built) -%}
        {%- set kept_columns = columns_built(columns, built) -%}
        {#- a table built before newest_load_id existed: the kept row's own load stands in, once -#}
        {%- set newest_column = 'newest_load_id' if has_newest_load_id(built) else 'source_load_id' -%}
        {%- set kept_newest_load = 'kept.newest_load_id' if newest_column == 'newest_load_id'
            else 'kept.source_load_id as newest_load_id' -%}
        {#- the newest load the table holds when the SQL runs: for a model, last_load_id; for a view, it
            may have grown since compiling (a build that stopped before the view) -#}
        {%- set last_load_sql = "(select coalesce(max(" ~ newest_column ~ "), '') from " ~ built ~ ")"
            if read_later else "'" ~ last_load_id ~ "'" -%}
        select *
        from (
            with

            new_rows as (
                select
                    {{ columns | join(', ') }},
                    source_load_id as newest_load_id
                from {{ staged }}
                where
                    source_load_id > '{{ last_load_id }}'
                    {%- if read_later %}
                    and source_load_id > {{ last_load_sql }}
                    {%- endif %}
            ),

            keys_to_decide as (
                select {{ key }} as decided_key
                from new_rows
                where {{ key }} is not null
                {%- if recheck %}

                union distinct

                select {{ key }} as decided_key
                from {{ built }}
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
                    source_load_id <= {{ last_load_sql }}
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
                    {{ kept_newest_load }},
                    {{ 'kept.rows_in_raw' if append_only else 'earlier_counts.earlier_rows' }} as raw_rows
                from {{ built }} as kept
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
{% macro last_load_built(built=none) -%}
    {%- set built = built if built is not none else (this if is_incremental() else none) -%}
    {#- without introspection (the credential-free BigQuery compile check) there is no table to ask;
        nor before the table is first built (a view compiled before it: dbt compile, docs generate) -#}
    {%- if built is none or not execute or not flags.INTROSPECT or not relation_exists(built) -%}
        {{ return('') }}
    {%- endif -%}
    {%- set newest = 'newest_load_id' if has_newest_load_id(built) else 'source_load_id' -%}
    {%- set result = run_query('select coalesce(max(' ~ newest ~ '), \'\') from ' ~ built) -%}
    {{ return(result.columns[0].values()[0]) }}
{%- endmacro %}


{#- whether the incremental model being built has its newest_load_id column yet (a table built before
    it existed gets it on this run: on_schema_change) -#}
{% macro has_newest_load_id(built=none) -%}
    {{ return('newest_load_id' in columns_built(['newest_load_id'], built)) }}
{%- endmacro %}


{#- union_of(views, columns): one view as it is (all its columns), or a subquery of the union of `views` (their `columns`) -#}
{% macro union_of(views, columns) -%}
    {%- if views | length == 1 and columns == ['*'] -%}
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
{% macro columns_built(columns, built=none) -%}
    {%- set built = built if built is not none else this -%}
    {#- a table not built yet is taken to be built as documented (a view compiled before it) -#}
    {%- if not execute or not flags.INTROSPECT or not relation_exists(built) -%}
        {{ return(columns) }}
    {%- endif -%}
    {%- set existing = adapter.get_columns_in_relation(built) | map(attribute='name') | map('lower') | list -%}
    {{ return(columns | select('in', existing) | list) }}
{%- endmacro %}


{#- the columns of a model as its YAML documents them (every column is documented: .ci/check_docs_coverage.py) -#}
{% macro documented_columns(relation) -%}
    {%- set node = node_built_as(relation) -%}
    {%- if not node -%}
        {{ exceptions.raise_compiler_error('documented_columns: no model is built as ' ~ relation) }}
    {%- endif -%}
    {{ return(node.columns.keys() | list) }}
{%- endmacro %}
