-- one row per raw table and completed dlt load: what became of every raw row of the load.
-- Each raw row is counted once, in the load it arrived in: kept by staging, it is valid or
-- quarantined; not kept, it is a duplicate staging removed (another row with its key was kept,
-- maybe from another load). Monitoring reads the raw tables, as staging does, because counting
-- them is the point: nothing between raw and the cleaned models may lose a row.
-- Every count is an aggregate per load, taken again on every build (no row-by-row join of raw and
-- kept row ids, which reads every row id of both). The rows staging kept from a load are
-- rows of that load, so the duplicates removed from it are its raw rows less its kept rows. Over a
-- table these must equal the duplicates staging counted on the rows it kept (rows_in_raw - 1; tested:
-- assert_duplicates_removed_match_staging), i.e. the raw rows must equal the sum of rows_in_raw: a raw
-- row staging lost, or a kept row counted twice or that raw does not hold, fails it; more kept than
-- raw rows in a load fails the per-load test (duplicates_removed >= 0).
-- A file the extract could not read counts as one raw row of the table its rows were for (below).
{#- each raw table: its name here, its source's `_dlt_loads` (the loads dlt completed), the relation
    holding the rows staging kept of it (for transactions and events the validated tables, which hold
    every staged row: computing staging's deduplication again would cost a full pass), and how many
    raw rows each kept row stands for (`rows_in_raw`; fx rates and chargebacks are not deduplicated) -#}
{#- Transactions and events of the batch sources and of the stream are validated together: their
    rows are told apart by source_table (null: validated before the column existed, the batch source's) -#}
{%- set transactions_of_app = "coalesce(source_table, 'app.transactions') = 'app.transactions'" %}
{%- set events_of_files = "coalesce(source_table, 'events.events') = 'events.events'" %}
{%- set raw_tables = [
    ('app.users', source('app', 'users'), source('app', '_dlt_loads'), ref('stg_app__users'), 'rows_in_raw', 'true'),
    ('app.transactions', source('app', 'transactions'), source('app', '_dlt_loads'), ref('int_transactions_validated'),
        'rows_in_raw', transactions_of_app),
    ('events.events', source('events', 'events'), source('events', '_dlt_loads'), ref('int_events_validated'),
        'rows_in_raw', events_of_files),
    ('fx.rates', source('fx', 'rates'), source('fx', '_dlt_loads'), ref('stg_fx__rates'), '1', 'true'),
    ('chargebacks.chargebacks', source('chargebacks', 'chargebacks'), source('chargebacks', '_dlt_loads'),
        ref('stg_chargebacks__chargebacks'), '1', 'true'),
] %}
{#- a file the extract could not read loads no rows: its row in raw_<source>.rejected_files counts as
    one raw row of the table its rows were for, staged and quarantined (unreadable_file), in the load
    that recorded the rejection; it is never a duplicate -#}
{%- set rejected_files = [
    ('events.events', source('events', 'rejected_files'), source('events', '_dlt_loads'),
        ref('stg_events__rejected_files'), 'true', 'true'),
    ('chargebacks.chargebacks', source('chargebacks', 'rejected_files'), source('chargebacks', '_dlt_loads'),
        ref('stg_chargebacks__rejected_files'), 'true', 'true'),
] %}
{#- the stream's tables, once the real-time consumer has loaded them: its transactions and events like the
    batch sources'; a record the ingestion service rejected (a dead letter) counts as one raw row of the
    stream table it was sent to, staged and quarantined, like a rejected file -#}
{%- if relation_exists(source('stream', '_dlt_loads')) %}
    {%- for table in ['transactions', 'events'] %}
        {%- if relation_exists(source('stream', table)) %}
            {%- do raw_tables.append((
                'stream.' ~ table, source('stream', table), source('stream', '_dlt_loads'),
                ref('int_transactions_validated' if table == 'transactions' else 'int_events_validated'), 'rows_in_raw',
                "source_table = 'stream." ~ table ~ "'"
            )) %}
        {%- endif %}
        {%- if relation_exists(source('stream', 'dead_letters')) %}
            {%- do rejected_files.append((
                'stream.' ~ table, source('stream', 'dead_letters'), source('stream', '_dlt_loads'),
                ref('stg_stream__dead_letters'),
                "kind = '" ~ table ~ "'", "source_table = 'stream." ~ table ~ "'"
            )) %}
        {%- endif %}
    {%- endfor %}
{%- endif %}
with

-- every raw row of a completed load, and every rejected file (one row each)
raw_counts_by_relation as (
    {%- for source_table, raw_relation, dlt_loads, staged_relation, kept_rows_in_raw, staged_filter in raw_tables %}
        select
            '{{ source_table }}' as source_table,
            _dlt_load_id as source_load_id,
            count(*) as raw_rows
        from {{ raw_relation }}
        where _dlt_load_id in ({{ completed_loads(dlt_loads) }})
        group by _dlt_load_id
        union all
    {%- endfor %}
    {%- for source_table, files_relation, dlt_loads, staged_files, raw_filter, staged_filter in rejected_files %}
        select
            '{{ source_table }}' as source_table,
            _dlt_load_id as source_load_id,
            count(*) as raw_rows
        from {{ files_relation }}
        where {{ raw_filter }} and _dlt_load_id in ({{ completed_loads(dlt_loads) }})
        group by _dlt_load_id
        {% if not loop.last %}
            union all
        {% endif %}
    {%- endfor %}
),

raw_counts as (
    select
        source_table,
        source_load_id,
        cast(sum(raw_rows) as {{ dbt.type_bigint() }}) as raw_rows
    from raw_counts_by_relation
    group by source_table, source_load_id
),

-- the rows staging kept; rows_in_raw - 1 is how many duplicates staging says it collapsed into each
staged_rows as (
    {%- for source_table, raw_relation, dlt_loads, staged_relation, kept_rows_in_raw, staged_filter in raw_tables %}
        select
            '{{ source_table }}' as source_table,
            source_load_id,
            {#- rows_in_raw is not aliased to itself -#}
            {{ kept_rows_in_raw }}{% if kept_rows_in_raw != 'rows_in_raw' %} as rows_in_raw{% endif %}
        from {{ staged_relation }}
        where {{ staged_filter }}
        union all
    {%- endfor %}
    {%- for source_table, files_relation, dlt_loads, staged_files, raw_filter, staged_filter in rejected_files %}
        select
            '{{ source_table }}' as source_table,
            source_load_id,
            1 as rows_in_raw
        from {{ staged_files }}
        where {{ staged_filter }}
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

    -- int_transactions_cleaned's rows (the validated rows that broke no rule), read from the validated
    -- table, which says which source each came from; depends_on: {{ ref('int_transactions_cleaned') }}
    select
        coalesce(source_table, 'app.transactions') as source_table,
        source_load_id
    from {{ ref('int_transactions_validated') }}
    where rejection_rule is null

    union all

    select
        coalesce(source_table, 'events.events') as source_table,
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

counts as (
    select
        loads.source_table,
        loads.source_load_id,
        coalesce(raw_counts.raw_rows, 0) as raw_rows,
        coalesce(staged_counts.staged_rows, 0) as staged_rows,
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

reconciled as (
    select
        source_table,
        source_load_id,
        raw_rows,
        staged_rows,
        -- the raw rows of this load staging did not keep (its kept rows are rows of this load)
        raw_rows - staged_rows as duplicates_removed,
        duplicates_counted_by_staging,
        valid_rows,
        quarantined_rows
    from counts
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
