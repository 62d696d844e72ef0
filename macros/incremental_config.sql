{#-
    The part of an incremental model's config that differs by warehouse, in one place. A model
    names its key and takes the rest as keyword arguments of its config():
        config(materialized='incremental', ..., **incremental_by_key('transaction_id'))
    dbt-bigquery has no delete+insert, so each kind of run maps to the BigQuery strategy that leaves
    the same rows; DuckDB (dbt-duckdb) deletes the keys a run rebuilt and inserts them again.
-#}

{#- a run replaces the rows of the keys it decided again: merge on BigQuery, delete+insert on DuckDB -#}
{% macro incremental_by_key(unique_key) %}
    {{ return({
        'incremental_strategy': 'merge' if target.type == 'bigquery' else 'delete+insert',
        'unique_key': unique_key,
    }) }}
{% endmacro %}

{#- a run replaces whole days: on BigQuery the table is partitioned by the day and clustered by
    `cluster_by`, and a run overwrites the partitions of the days it built (insert_overwrite); on
    DuckDB a run deletes those days and inserts them again (no partitions there) -#}
{% macro incremental_by_day(day_column, cluster_by=none) %}
    {% if target.type == 'bigquery' %}
        {{ return({
            'incremental_strategy': 'insert_overwrite',
            'unique_key': day_column,
            'partition_by': {'field': day_column, 'data_type': 'date'},
            'cluster_by': cluster_by,
        }) }}
    {% endif %}
    {{ return({
        'incremental_strategy': 'delete+insert',
        'unique_key': day_column,
        'partition_by': none,
        'cluster_by': none,
    }) }}
{% endmacro %}
