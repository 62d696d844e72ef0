-- one row per raw table and completed dlt load: what became of every raw row of the load.
-- Each raw row is counted once, in the load it arrived in: kept by staging, it is valid or
-- quarantined; not kept, it is a duplicate staging removed (another row with its key was kept,
-- maybe from another load). Monitoring reads the raw tables, as staging does, because counting
-- them is the point: nothing between raw and the cleaned models may lose a row.
-- Every count is taken again on every build. The row-by-row check of which raw rows staging kept
-- (a join on the row id, the expensive part: a minute at 10M transactions) runs for the loads that
-- are new or whose duplicates (raw rows - staged rows) changed since the last build; the other
-- loads carry their last check over. A full refresh checks every load again.
-- A file the extract could not read counts as one raw row of the table its rows were for (below).
{#- each raw table: its name here, the dbt source it belongs to, the relation holding the rows
    staging kept of it (for transactions and events the validated tables, which hold every staged
    row: computing staging's deduplication again would cost a full pass), and how many raw rows each
    kept row stands for (`rows_in_raw`; fx rates and chargebacks are not deduplicated) -#}
{#- Transactions and events of the batch sources and of the stream are validated together: their
    rows are told apart by source_table (null: validated before the column existed, the batch source's) -#}
{%- set transactions_of_app = "coalesce(source_table, 'app.transactions') = 'app.transactions'" %}
{%- set events_of_files = "coalesce(source_table, 'events.events') = 'events.events'" %}
{%- set raw_tables = [
    ('app.users', source('app', 'users'), 'app', ref('stg_app__users'), 'rows_in_raw', 'true'),
    ('app.transactions', source('app', 'transactions'), 'app', ref('int_transactions_validated'), 'rows_in_raw',
        transactions_of_app),
    ('events.events', source('events', 'events'), 'events', ref('int_events_validated'), 'rows_in_raw', events_of_files),
    ('fx.rates', source('fx', 'rates'), 'fx', ref('stg_fx__rates'), '1', 'true'),
    ('chargebacks.chargebacks', source('chargebacks', 'chargebacks'), 'chargebacks', ref('stg_chargebacks__chargebacks'), '1', 'true'),
] %}
{#- a file the extract could not read loads no rows: its row in raw_<source>.rejected_files counts as
    one raw row of the table its rows were for, staged and quarantined (unreadable_file), in the load
    that recorded the rejection; it is never a duplicate -#}
{%- set rejected_files = [
    ('events.events', source('events', 'rejected_files'), 'events', ref('stg_events__rejected_files'), 'true', 'true'),
    ('chargebacks.chargebacks', source('chargebacks', 'rejected_files'), 'chargebacks', ref('stg_chargebacks__rejected_files'),
        'true', 'true'),
] %}
{#- the stream's tables, once the real-time consumer has loaded them: its transactions and events like the
    batch sources'; a record the ingestion service rejected (a dead letter) counts as one raw row of the
    stream table it was sent to, staged and quarantined, like a rejected file -#}
{%- if relation_exists(source('stream', '_dlt_loads')) %}
    {%- for table in ['transactions', 'events'] %}
        {%- if relation_exists(source('stream', table)) %}
            {%- do raw_tables.append((
                'stream.' ~ table, source('stream', table), 'stream',
                ref('int_transactions_validated' if table == 'transactions' else 'int_events_validated'), 'rows_in_raw',
                "source_table = 'stream." ~ table ~ "'"
            )) %}
        {%- endif %}
        {%- if relation_exists(source('stream', 'dead_letters')) %}
            {%- do rejected_files.append((
                'stream.' ~ table, source('stream', 'dead_letters'), 'stream', ref('stg_stream__dead_letters'),
                "kind = '" ~ table ~ "'", "source_table = 'stream." ~ table ~ "'"
            )) %}
        {%- endif %}
    {%- endfor %}
{%- endif %}
{%- set previous = previous_build() %}

with

-- every raw row of a completed load, and every rejected file (one row each)
raw_counts_by_relation as (
    {%- for source_table, raw_relation, source_name, staged_relation, kept_rows_in_raw, staged_filter in raw_tables %}
        select
            '{{ source_table }}' as source_table,
            _dlt_load_id as source_load_id,
            count(*) as raw_rows
        from {{ raw_relation }}
        where _dlt_load_id in ({{ completed_loads(source_name) }})
        group by _dlt_load_id
        union all
    {%- endfor %}
    {%- for source_table, files_relation, source_name, staged_files, raw_filter, staged_filter in rejected_files %}
        select
            '{{ source_table }}' as source_table,
            _dlt_load_id as source_load_id,
            count(*) as raw_rows
        from {{ files_relation }}
        where {{ raw_filter }} and _dlt_load_id in ({{ completed_loads(source_name) }})
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
    {%- for source_table, raw_relation, source_name, staged_relation, kept_rows_in_raw, staged_filter in raw_tables %}
        select
            '{{ source_table }}' as source_table,
            source_load_id,
            {{ kept_rows_in_raw }} as rows_in_raw
        from {{ staged_relation }}
        where {{ staged_filter }}
        union all
    {%- endfor %}
    {%- for source_table, files_relation, source_name, staged_files, raw_filter, staged_filter in rejected_files %}
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

-- loads the last build checked row by row whose duplicates have not changed since: their check
-- stands (a load whose kept rows dlt's merge replaced loses as many raw as staged rows)
checks_carried_over as (
    {%- if previous %}
        select
            counts.source_table,
            counts.source_load_id,
            previous.duplicates_removed
        from counts
        inner join {{ previous }} as previous
            on
                counts.source_table = previous.source_table
                and counts.source_load_id = previous.source_load_id
        where counts.raw_rows - counts.staged_rows = previous.raw_rows - previous.staged_rows
    {%- else %}
        select
            source_table,
            source_load_id,
            0 as duplicates_removed
        from counts
        where false
    {%- endif %}
),

loads_to_check as (
    select
        counts.source_table,
        counts.source_load_id
    from counts
    left join checks_carried_over
        on
            counts.source_table = checks_carried_over.source_table
            and counts.source_load_id = checks_carried_over.source_load_id
    where checks_carried_over.source_load_id is null
),

-- the raw rows of those loads (all completed: every count reads completed loads only), and whether
-- staging kept them: a raw row no staged row names is a duplicate staging removed. One semi-join
-- per table, on the row id alone (a staged row that appeared twice would not count its raw row
-- twice: it shows as more staged than raw rows)
checks_made as (
    {%- for source_table, raw_relation, source_name, staged_relation, kept_rows_in_raw, staged_filter in raw_tables %}
        {%- set loads_of_table -%}
            select loads_to_check.source_load_id
            from loads_to_check
            where loads_to_check.source_table = '{{ source_table }}'
        {%- endset %}
        select
            '{{ source_table }}' as source_table,
            source_load_id,
            sum(case when is_staged then 0 else 1 end) as duplicates_removed
        from (
            select
                _dlt_load_id as source_load_id,
                _dlt_id in (
                    select kept.source_row_id
                    from {{ staged_relation }} as kept
                    where kept.source_load_id in ({{ loads_of_table }})
                ) as is_staged
            from {{ raw_relation }}
            where _dlt_load_id in ({{ loads_of_table }})
        ) as raw_rows
        group by source_load_id
        {% if not loop.last %}
            union all
        {% endif %}
    {%- endfor %}
),

checks as (
    select * from checks_carried_over

    union all

    select * from checks_made
),

reconciled as (
    select
        counts.source_table,
        counts.source_load_id,
        counts.raw_rows,
        counts.staged_rows,
        coalesce(checks.duplicates_removed, 0) as duplicates_removed,
        counts.duplicates_counted_by_staging,
        counts.valid_rows,
        counts.quarantined_rows
    from counts
    left join checks
        on
            counts.source_table = checks.source_table
            and counts.source_load_id = checks.source_load_id
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
