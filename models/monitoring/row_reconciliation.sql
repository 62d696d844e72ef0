-- one row per raw table and completed dlt load: what became of every raw row of the load.
-- Each raw row is counted once, in the load it arrived in: kept by staging, it is valid or
-- quarantined; not kept, it is a duplicate staging removed (another row with its key was kept,
-- maybe from another load). Monitoring reads the raw tables, as staging does, because counting
-- them is the point: nothing between raw and the cleaned models may lose a row.
{#- each raw table: its name here, the dbt source it belongs to, the relation holding the rows
    staging kept of it (for transactions and events the validated tables, which hold every staged
    row: computing staging's deduplication again would cost a full pass), and how many raw rows each
    kept row stands for (`rows_in_raw`; fx rates and chargebacks are not deduplicated) -#}
{%- set raw_tables = [
    ('app.users', source('app', 'users'), 'app', ref('stg_app__users'), 'rows_in_raw'),
    ('app.transactions', source('app', 'transactions'), 'app', ref('int_transactions_validated'), 'rows_in_raw'),
    ('events.events', source('events', 'events'), 'events', ref('int_events_validated'), 'rows_in_raw'),
    ('fx.rates', source('fx', 'rates'), 'fx', ref('stg_fx__rates'), '1'),
    ('chargebacks.chargebacks', source('chargebacks', 'chargebacks'), 'chargebacks', ref('stg_chargebacks__chargebacks'), '1'),
] %}
with

-- every raw row of a completed load, and whether staging kept it: a raw row no staged row names
-- is a duplicate staging removed. One semi-join per table, on the row id alone (a staged row that
-- appeared twice would not count its raw row twice: it shows as more staged than raw rows).
raw_counts as (
    {%- for source_table, raw_relation, source_name, staged_relation, kept_rows_in_raw in raw_tables %}
        select
            '{{ source_table }}' as source_table,
            source_load_id,
            count(*) as raw_rows,
            sum(case when is_staged then 0 else 1 end) as duplicates_removed
        from (
            select
                _dlt_load_id as source_load_id,
                _dlt_id in (select kept.source_row_id from {{ staged_relation }} as kept) as is_staged
            from {{ raw_relation }}
            where _dlt_load_id in ({{ completed_loads(source_name) }})
        ) as raw_rows
        group by source_load_id
        {% if not loop.last %}
            union all
        {% endif %}
    {%- endfor %}
),

-- the rows staging kept; rows_in_raw - 1 is how many duplicates staging says it collapsed into each
staged_rows as (
    {%- for source_table, raw_relation, source_name, staged_relation, kept_rows_in_raw in raw_tables %}
        select
            '{{ source_table }}' as source_table,
            source_load_id,
            {{ kept_rows_in_raw }} as rows_in_raw
        from {{ staged_relation }}
        {% if not loop.last %}
            union all
        {% endif %}
    {%- endfor %}
),

-- the rows the feature models read: the cleaned and validated rows that broke no rule
valid_rows as (
    select
        'app.users' as source_table,
        source_load_id
    from {{ ref('int_users_cleaned') }}

    union all

    select
        'app.transactions' as source_table,
        source_load_id
    from {{ ref('int_transactions_cleaned') }}

    union all

    select
        'events.events' as source_table,
        source_load_id
    from {{ ref('int_events_validated') }}
    where rejection_rule is null

    union all

    select
        'fx.rates' as source_table,
        source_load_id
    from {{ ref('int_fx_rates_ranged') }}

    union all

    select
        'chargebacks.chargebacks' as source_table,
        source_load_id
    from {{ ref('int_chargebacks_validated') }}
    where rejection_rule is null
),

quarantined_rows as (
    select * from {{ ref('int_quarantined_rows') }}
),

staged_counts as (
    select
        source_table,
        source_load_id,
        count(*) as staged_rows,
        cast(sum(rows_in_raw - 1) as {{ dbt.type_bigint() }}) as duplicates_counted_by_staging
    from staged_rows
    group by source_table, source_load_id
),

valid_counts as (
    select
        source_table,
        source_load_id,
        count(*) as valid_rows
    from valid_rows
    group by source_table, source_load_id
),

quarantined_counts as (
    select
        source_table,
        source_load_id,
        count(*) as quarantined_rows
    from quarantined_rows
    group by source_table, source_load_id
),

-- every table and load any count has: a valid or quarantined row of a load raw does not have shows up
counted_loads as (
    select
        source_table,
        source_load_id
    from raw_counts

    union all

    select
        source_table,
        source_load_id
    from staged_counts

    union all

    select
        source_table,
        source_load_id
    from valid_counts

    union all

    select
        source_table,
        source_load_id
    from quarantined_counts
),

loads as (
    select distinct
        source_table,
        source_load_id
    from counted_loads
),

reconciled as (
    select
        loads.source_table,
        loads.source_load_id,
        coalesce(raw_counts.raw_rows, 0) as raw_rows,
        coalesce(staged_counts.staged_rows, 0) as staged_rows,
        coalesce(raw_counts.duplicates_removed, 0) as duplicates_removed,
        coalesce(staged_counts.duplicates_counted_by_staging, 0) as duplicates_counted_by_staging,
        coalesce(valid_counts.valid_rows, 0) as valid_rows,
        coalesce(quarantined_counts.quarantined_rows, 0) as quarantined_rows
    from loads
    left join raw_counts
        on
            loads.source_table = raw_counts.source_table
            and loads.source_load_id = raw_counts.source_load_id
    left join staged_counts
        on
            loads.source_table = staged_counts.source_table
            and loads.source_load_id = staged_counts.source_load_id
    left join valid_counts
        on
            loads.source_table = valid_counts.source_table
            and loads.source_load_id = valid_counts.source_load_id
    left join quarantined_counts
        on
            loads.source_table = quarantined_counts.source_table
            and loads.source_load_id = quarantined_counts.source_load_id
),

final as (
    select
        *,
        -- positive: rows lost on the way; negative: rows counted twice (valid and quarantined)
        raw_rows - valid_rows - quarantined_rows - duplicates_removed as unaccounted_rows,
        1.0 * quarantined_rows / nullif(staged_rows, 0) as quarantined_share
    from reconciled
)

select * from final
