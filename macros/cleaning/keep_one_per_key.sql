{#-
    Deduplication: keep_one_per_key keeps one row per key of a relation, counting the rows it
    stands for; key_hash is the cheap key its group-bys find repeated keys by. Used by staging
    (stg_app__users) and the validated tables (macros/cleaning/deduplicate.sql).
-#}

{#- key_hash(key): a 64-bit hash of `key` (SQL) on DuckDB; BigQuery groups the key itself -#}
{% macro key_hash(key) -%}
    {{ return(adapter.dispatch('key_hash', 'ml_features')(key)) }}
{%- endmacro %}

{% macro default__key_hash(key) -%}
    hash({{ key }})
{%- endmacro %}

{% macro bigquery__key_hash(key) -%}
    {{ key }}
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

    Only the rows of repeated keys are ranked. They are found by group-bys, which DuckDB spills to
    disk (a window over every raw row runs out of memory on large tables): first of a 64-bit hash
    of the key (key_hash), cheap to group even when nearly every key is distinct, then of the keys
    whose hash repeats, a few rows: two keys sharing a hash only add candidates, which the second
    group-by, on the key itself, tells apart. The group-bys and the ranking read only the columns
    they need; the wide rows are read once (the relation is read four times, never through a CTE,
    which DuckDB could materialize whole).
-#}
{% macro keep_one_per_key(rows, key, order_by, row_id, where=none, weight=none, columns=none, newest_load=none) %}
    {%- set filter = '(' ~ where ~ ')' if where else 'true' %}
    select *
    from (
        with

        repeated_hashes as (
            select {{ key_hash(key) }} as dedup_hash
            from {{ rows }}
            where {{ filter }} and {{ key }} is not null
            group by {{ key_hash(key) }}
            having count(*) > 1
        ),

        repeated_keys as (
            select
                {{ key }} as dedup_key,
                {{ 'sum(' ~ weight ~ ')' if weight else 'count(*)' }} as rows_in_raw
                {%- if newest_load %},
                max({{ newest_load }}) as newest_load_id
                {%- endif %}
            from {{ rows }}
            where
                {{ filter }}
                and {{ key }} is not null
                and {{ key_hash(key) }} in (select repeated_hashes.dedup_hash from repeated_hashes)
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
