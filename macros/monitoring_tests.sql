{#-
    Monitoring tests, written once and reused: the lesson's checks on volume and completeness.
    Each returns one row per breach, with a `failure_message` that names the rule, the group
    and the numbers, so `dbt build` output and the stored failures (schema `test_failures`)
    say what went wrong. Apply with `severity: warn` unless a breach makes features wrong.
-#}

{#-
    row_count_not_dropped: the latest group (a dlt load, a day) has at least (1 - max_drop) of the
    average row count of the `trailing` groups before it. Groups are ordered by the value of
    `group_by_column` (a column or expression; dlt load ids order as text). With `partition_by`
    the check runs within each partition (e.g. per source table); with `count_column` the rows'
    values of that column are summed instead of counting rows (for an already aggregated model).
    Fewer than `min_trailing` earlier groups is no baseline: nothing to compare, the test passes.
    `exclude_first` leaves the first group out of the baseline (the initial backfill load).
-#}
{% test row_count_not_dropped(
    model, group_by_column, max_drop=0.2, trailing=7, min_trailing=3,
    partition_by=none, count_column=none, exclude_first=false
) %}
with

counts as (
    select
        {{ partition_by if partition_by else "'all'" }} as partition_value,
        {{ group_by_column }} as group_value,
        {{ 'sum(' ~ count_column ~ ')' if count_column else 'count(*)' }} as row_count
    from {{ model }}
    where {{ group_by_column }} is not null
    group by partition_value, group_value
),

ranked as (
    select
        partition_value,
        group_value,
        row_count,
        row_number() over (partition by partition_value order by group_value desc) as recency,
        row_number() over (partition by partition_value order by group_value) as group_position
    from counts
),

latest as (
    select * from ranked
    where recency = 1
),

baseline as (
    select
        partition_value,
        avg(row_count) as trailing_average,
        count(*) as trailing_groups
    from ranked
    where
        recency between 2 and {{ trailing + 1 }}
        {%- if exclude_first %}
            and group_position > 1
        {%- endif %}
    group by partition_value
),

dropped as (
    select
        latest.partition_value,
        cast(latest.group_value as {{ dbt.type_string() }}) as latest_group,
        latest.row_count,
        baseline.trailing_average,
        baseline.trailing_groups,
        1 - latest.row_count / baseline.trailing_average as drop_fraction
    from latest
    inner join baseline
        on latest.partition_value = baseline.partition_value
    where
        baseline.trailing_groups >= {{ min_trailing }}
        and baseline.trailing_average > 0
        and latest.row_count < (1 - {{ max_drop }}) * baseline.trailing_average
)

select
    *,
    'row_count_not_dropped: ' || partition_value || ' ' || '{{ group_by_column | replace("'", "") }}' || ' '
    || latest_group || ' has ' || cast(row_count as {{ dbt.type_string() }}) || ' rows, '
    || cast(round(100 * drop_fraction, 1) as {{ dbt.type_string() }}) || '% below the average '
    || cast(round(trailing_average, 1) as {{ dbt.type_string() }}) || ' of the previous '
    || cast(trailing_groups as {{ dbt.type_string() }}) || ' (alert above {{ (max_drop * 100) | round(1) }}%)'
    as failure_message
from dropped
{% endtest %}


{#- null_rate_below: the share of null values of the column is at most max_rate (0 to 1) -#}
{% test null_rate_below(model, column_name, max_rate) %}
with

measured as (
    select
        count(*) as total_rows,
        sum(case when {{ column_name }} is null then 1 else 0 end) as null_rows
    from {{ model }}
),

breached as (
    select
        null_rows,
        total_rows,
        1.0 * null_rows / total_rows as null_rate
    from measured
    where total_rows > 0 and null_rows > {{ max_rate }} * total_rows
)

select
    *,
    'null_rate_below: {{ column_name }} is null in ' || cast(null_rows as {{ dbt.type_string() }}) || ' of '
    || cast(total_rows as {{ dbt.type_string() }}) || ' rows ('
    || cast(round(100 * null_rate, 1) as {{ dbt.type_string() }}) || '%), above the allowed {{ max_rate * 100 }}%'
    as failure_message
from breached
{% endtest %}
