{#-
    run_setting(name): a setting of this run (run_date, from_date, to_date): the dbt var when one is
    given, else the environment variable ML_FEATURES_<NAME>, else none. The pipeline passes them in
    the environment: dbt parses the whole project again whenever --vars change.
    Read only when SQL is compiled, never while parsing (none then): no node's structure depends on
    them, so a new day needs no parsing at all (and dbt's partial parsing, re-reading a singular test
    whose environment variable changed, drops the test's YAML description).
-#}
{% macro run_setting(name) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(var(name, none) or env_var('ML_FEATURES_' ~ name | upper, '') or none) }}
{%- endmacro %}


{#-
    run_date: the day the pipeline runs "as of", up to its end (run_setting `run_date`, default
    today in UTC). Labels mature, and the training window ends, relative to it.
-#}
{% macro run_date() -%}
    cast('{{ run_setting("run_date") or run_started_at.strftime("%Y-%m-%d") }}' as date)
{%- endmacro %}


{#- the end of the run date (midnight after it), as a timestamp: what the run knows is before this -#}
{% macro run_date_end() -%}
    cast({{ dbt.dateadd('day', 1, run_date()) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}
