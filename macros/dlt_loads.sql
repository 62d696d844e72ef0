{#-
    Helpers for reading dlt's raw tables.

    completed_loads: the load ids dlt finished (status 0 in `_dlt_loads`). Staging reads only
    rows of completed loads, so a load killed half-way is never seen downstream.
-#}
{% macro completed_loads(source_name) -%}
    select load_id from {{ source(source_name, '_dlt_loads') }} where status = 0
{%- endmacro %}


{#- load_id_timestamp(load_id): when dlt made a load, as a UTC timestamp: a dlt load id is the unix
    time (seconds, with a fraction) its package was created -#}
{% macro load_id_timestamp(load_id) -%}
    {{ return(adapter.dispatch('load_id_timestamp', 'ml_features')(load_id)) }}
{%- endmacro %}

{% macro default__load_id_timestamp(load_id) -%}
    make_timestamp(cast(cast({{ load_id }} as double) * 1000000 as bigint))
{%- endmacro %}

{% macro bigquery__load_id_timestamp(load_id) -%}
    timestamp_micros(cast(cast({{ load_id }} as float64) * 1000000 as int64))
{%- endmacro %}


{#-
    column_or_null: the column when the raw table has it, else a typed null. Columns that appear
    part-way (schema evolution, e.g. users.loyalty_tier) do not break models built before they exist.

    Without introspection (`execute` false while parsing, or `dbt compile --no-introspect`, as the
    BigQuery compile check in CI runs without credentials) the warehouse cannot be asked, so the
    macro emits the column: that is the SQL that runs once dlt has created the column, the case that
    matters for checking it. A run with a connection always looks the table up.
-#}
{% macro column_or_null(relation, column_name, data_type) -%}
    {%- if not execute or not flags.INTROSPECT -%}
        cast({{ adapter.quote(column_name) }} as {{ data_type }})
    {%- else -%}
        {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- if column_name | lower in columns -%}
            cast({{ adapter.quote(column_name) }} as {{ data_type }})
        {%- else -%}
            cast(null as {{ data_type }})
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#-
    keep_one_per_key(rows, key, order_by, row_id, where): the rows of `rows` (a relation) that pass
    `where`, one per `key` (the first by `order_by`): every column, plus `rows_in_raw` (how many of
    those rows had the key). Rows whose key is null are never collapsed together: each stays, for
    quarantine. `key`, `order_by` and `where` are SQL over the columns of `rows`, unqualified;
    `row_id` names a column unique per row. A `where` must select whole keys (every row of a key or
    none), so each key is decided on all of its rows. With `weight` (a column: how many raw rows a
    row stands for) `rows_in_raw` sums it, and `columns` lists the columns to return (default all).
    With `newest_load` (a column: the newest dlt load a row stands for) it also returns
    `newest_load_id`, the greatest of them over the key's rows.

    Only the rows of repeated keys are ranked. They are found by a group-by, which DuckDB spills to
    disk: a window over every raw row ran out of memory at 10M transactions and 50M events. The
    group-by and the ranking read only the columns they need; the wide rows are read once (the
    relation is read three times, never through a CTE, which DuckDB could materialize whole).
-#}
{% macro keep_one_per_key(rows, key, order_by, row_id, where=none, weight=none, columns=none, newest_load=none) %}
    {%- set filter = '(' ~ where ~ ')' if where else 'true' %}
    select *
    from (
        with

        repeated_keys as (
            select
                {{ key }} as dedup_key,
                {{ 'sum(' ~ weight ~ ')' if weight else 'count(*)' }} as rows_in_raw
                {%- if newest_load %},
                max({{ newest_load }}) as newest_load_id
                {%- endif %}
            from {{ rows }}
            where {{ filter }} and {{ key }} is not null
            group by {{ key }}
            having count(*) > 1
        ),

        kept_repeats as (
            select kept_row_id
            from (
                select
                    repeats.{{ row_id }} as kept_row_id,
                    row_number() over (partition by repeated_keys.dedup_key order by {{ order_by }}) as key_rank
                from {{ rows }} as repeats
                inner join repeated_keys
                    on {{ key }} = repeated_keys.dedup_key
                where {{ filter }}
            ) as ranked
            where key_rank = 1
        )

        select
            {% for column in columns or ['*'] -%}
                candidates.{{ column }},
            {%- endfor %}
            coalesce(repeated_keys.rows_in_raw, {{ 'candidates.' ~ weight if weight else '1' }}) as rows_in_raw
            {%- if newest_load %},
            coalesce(repeated_keys.newest_load_id, candidates.{{ newest_load }}) as newest_load_id
            {%- endif %}
        from {{ rows }} as candidates
        left join repeated_keys
            on {{ key }} = repeated_keys.dedup_key
        where
            {{ filter }}
            and (
                repeated_keys.dedup_key is null
                or candidates.{{ row_id }} in (select kept_repeats.kept_row_id from kept_repeats)
            )
    ) as one_per_key
{% endmacro %}
