{#-
    Cross-database SQL: dates, windows, statistics and types written once for DuckDB (`default__`) and
    BigQuery (`bigquery__`), where dbt's own cross-database macros have no equivalent or differ.
-#}

{#- microseconds since the epoch: an integer order key for exact-duration range windows -#}
{% macro epoch_microseconds(column) -%}
    {{ return(adapter.dispatch('epoch_microseconds', 'ml_features')(column)) }}
{%- endmacro %}

{% macro default__epoch_microseconds(column) -%}
    epoch_us({{ column }})
{%- endmacro %}

{% macro bigquery__epoch_microseconds(column) -%}
    unix_micros({{ column }})
{%- endmacro %}


{#- whole hours since the epoch of a number of microseconds since it: an integer hour key -#}
{% macro hour_number(microseconds) -%}
    {{ return(adapter.dispatch('hour_number', 'ml_features')(microseconds)) }}
{%- endmacro %}

{% macro default__hour_number(microseconds) -%}
    ({{ microseconds }}) // 3600000000
{%- endmacro %}

{% macro bigquery__hour_number(microseconds) -%}
    div({{ microseconds }}, 3600000000)
{%- endmacro %}


{#- microseconds in a number of days, for range-window offsets -#}
{% macro days_in_microseconds(days) -%}
    {{ (days * 86400 * 1000000) | int }}
{%- endmacro %}


{#- a continuous percentile over all rows of an aggregate query -#}
{% macro percentile(column, fraction) -%}
    {{ return(adapter.dispatch('percentile', 'ml_features')(column, fraction)) }}
{%- endmacro %}

{% macro default__percentile(column, fraction) -%}
    quantile_cont({{ column }}, {{ fraction }})
{%- endmacro %}

{#-
    BigQuery has percentile_cont only as a window function, and approx_quantiles returns one of the
    input values (the median of [20, 40] is 20 or 40, never 30). The exact continuous percentile of
    quantile_cont / percentile_cont: the values sorted, the one at position fraction * (n - 1), linearly
    interpolated between its two neighbours (n counts non-null values; no values gives null). The
    sorted values are one array of the query's rows: at most BigQuery's 100 MB a row (~12M float64s).
-#}
{% macro bigquery__percentile(column, fraction) -%}
    {%- set sorted_values = 'array_agg(' ~ column ~ ' ignore nulls order by ' ~ column ~ ')' -%}
    {%- set position = '(' ~ fraction ~ ' * (count(' ~ column ~ ') - 1))' -%}
    {%- set below = sorted_values ~ '[safe_offset(cast(floor(' ~ position ~ ') as int64))]' -%}
    {%- set above = sorted_values ~ '[safe_offset(cast(ceil(' ~ position ~ ') as int64))]' -%}
    ({{ below }} + ({{ above }} - {{ below }}) * ({{ position }} - floor({{ position }})))
{%- endmacro %}


{#- hour of day 0-23 of a timestamp -#}
{% macro date_part_hour(column) -%}
    {{ return(adapter.dispatch('date_part_hour', 'ml_features')(column)) }}
{%- endmacro %}

{% macro default__date_part_hour(column) -%}
    extract(hour from {{ column }})
{%- endmacro %}


{#- ISO day of week: 1 = Monday ... 7 = Sunday -#}
{% macro iso_day_of_week(column) -%}
    {{ return(adapter.dispatch('iso_day_of_week', 'ml_features')(column)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(column) -%}
    isodow({{ column }})
{%- endmacro %}

{#- BigQuery's dayofweek is 1 = Sunday ... 7 = Saturday -#}
{% macro bigquery__iso_day_of_week(column) -%}
    (mod(extract(dayofweek from {{ column }}) + 5, 7) + 1)
{%- endmacro %}


{#- whole days since 1970-01-01 of a date: an integer order key for day-range windows -#}
{% macro day_number(date_expression) -%}
    {{ return(adapter.dispatch('day_number', 'ml_features')(date_expression)) }}
{%- endmacro %}

{% macro default__day_number(date_expression) -%}
    date_diff('day', date '1970-01-01', {{ date_expression }})
{%- endmacro %}

{% macro bigquery__day_number(date_expression) -%}
    unix_date({{ date_expression }})
{%- endmacro %}


{#-
    timestamp_add: dbt.dateadd for timestamps, giving a timestamp on every warehouse. On BigQuery
    dbt.dateadd casts to DATETIME, which BigQuery will not compare with a TIMESTAMP (`created_at`,
    `reported_at`, snapshot validity); BigQuery's timestamp_add takes parts up to `day`.
-#}
{% macro timestamp_add(datepart, interval, from_timestamp) -%}
    {{ return(adapter.dispatch('timestamp_add', 'ml_features')(datepart, interval, from_timestamp)) }}
{%- endmacro %}

{% macro default__timestamp_add(datepart, interval, from_timestamp) -%}
    {{ dbt.dateadd(datepart, interval, from_timestamp) }}
{%- endmacro %}

{% macro bigquery__timestamp_add(datepart, interval, from_timestamp) -%}
    {%- if datepart | lower not in ['microsecond', 'millisecond', 'second', 'minute', 'hour', 'day'] -%}
        {{ exceptions.raise_compiler_error(
            "timestamp_add: BigQuery adds microsecond to day to a timestamp, not '" ~ datepart ~ "'"
        ) }}
    {%- endif -%}
    timestamp_add(cast({{ from_timestamp }} as timestamp), interval ({{ interval }}) {{ datepart }})
{%- endmacro %}


{#- an 8-byte float: dbt.type_float() is a 4-byte `float` on DuckDB, too coarse for rates and scaling -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'ml_features')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double
{%- endmacro %}

{% macro bigquery__type_double() -%}
    float64
{%- endmacro %}
