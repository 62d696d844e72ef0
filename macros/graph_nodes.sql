{#- the model or snapshot node dbt builds as `relation` (by schema and name), or none -#}
{% macro node_built_as(relation) -%}
    {%- if execute and relation is not string and relation.identifier -%}
        {%- for node in graph.nodes.values() if node.resource_type in ('model', 'snapshot') -%}
            {%- if node.alias | lower == relation.identifier | lower
                and node.schema | lower == (relation.schema or '') | lower -%}
                {{ return(node) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}
