{#-
    Write-audit-publish for the gold layer.

    dbt builds the gold tables (models with meta.publish) in the `marts_audit` schema and tests
    them there. This on-run-end hook then publishes all of them to `marts`, the schema consumers
    read, in one transaction (publish_tables: on DuckDB by renaming, not copying, what dbt rebuilds
    whole), but only when the invocation built every one of them and no node
    failed (error-severity tests; warnings do not block). A reader of `marts` sees the previous
    good version or the new one, never a mix and never a table that failed its tests.
    Every decision is appended to monitoring.publish_log with its reason.

    `dbt run-operation publish_gold_now` publishes the audited tables without a build (after
    checking them by hand, for instance).
-#}
{% macro publish_gold(results) %}
    {#- `dbt test` builds nothing, so it never changes what is published (the pipeline's tests after
        the publish run so) -#}
    {% if not execute or flags.WHICH not in ('build', 'run', 'seed', 'snapshot') %}
        {{ return('') }}
    {% endif %}
    {% set gold = gold_models() %}
    {% set built = [] %}
    {% set failed = [] %}
    {% for result in results %}
        {% if result.status in ('error', 'fail', 'runtime error') %}
            {% do failed.append(result.node.name ~ ' (' ~ result.status ~ ')') %}
        {% elif result.node.unique_id in gold and result.status == 'success' %}
            {% do built.append(result.node.name) %}
        {% endif %}
    {% endfor %}
    {% if not built and not failed %}
        {{ return('') }}
    {% endif %}
    {% if failed %}
        {% set reason = 'not published: ' ~ failed | length ~ ' node(s) failed: ' ~ failed | join(', ') %}
        {% do record_publish('not_published', reason, built) %}
    {% elif flags.WHICH != 'build' %}
        {% do record_publish('not_published', 'not published: only `dbt build` runs the tests that audit a publish', built) %}
    {% elif built | length < gold | length %}
        {% set reason = 'not published: this build built ' ~ built | length ~ ' of the ' ~ gold | length
            ~ ' gold models; build them all to publish' %}
        {% do record_publish('not_published', reason, built) %}
    {% else %}
        {% set days = publish_tables(gold.values() | list) %}
        {% do record_publish('published', 'published ' ~ gold | length ~ ' gold models', built, days) %}
    {% endif %}
    {{ return('') }}
{% endmacro %}


{#- unique_id -> model node, for every enabled model marked meta.publish -#}
{% macro gold_models() %}
    {% set gold = {} %}
    {% for node in graph.nodes.values() %}
        {% if node.resource_type == 'model' and node.config.meta.get('publish') %}
            {% do gold.update({node.unique_id: node}) %}
        {% endif %}
    {% endfor %}
    {{ return(gold) }}
{% endmacro %}


{% macro published_schema() %}
    {{ return('marts') }}
{% endmacro %}


{#-
    published(audited): the published twin (in `marts`) of a gold model's audited relation, what
    consumers and the realtime view read: `published(ref('fct_transaction_features'))`, so the model
    names its parent. Pure: it queries nothing (compiling, `dbt docs generate` and sqlfluff write
    nothing to the warehouse); create_published_placeholders, the reading model's pre-hook, makes
    sure it exists before the first publish.
-#}
{% macro published(audited) %}
    {% if execute %}
        {% do gold_model_of(audited) %}
    {% endif %}
    {{ return(audited.incorporate(path={'schema': published_schema()})) }}
{% endmacro %}


{#- the gold model node whose audited relation is `audited` (a compile error when it is not gold:
    it has no published twin) -#}
{% macro gold_model_of(audited) %}
    {% for node in gold_models().values() %}
        {% if node.schema == audited.schema and node.alias == audited.identifier %}
            {{ return(node) }}
        {% endif %}
    {% endfor %}
    {{ exceptions.raise_compiler_error('published(' ~ audited ~ '): not a gold model (meta.publish), so never published') }}
{% endmacro %}


{#-
    create_published_placeholders(audited_relations): the pre-hook of a model that reads published
    tables, e.g. `pre_hook="{{ create_published_placeholders([ref('fct_transaction_features')]) }}"`.
    Before the first publish, each one is created empty with its audited table's columns (and on
    BigQuery its partitioning and clustering), so the view over it can be created and "nothing
    published yet" reads as no rows, never as unaudited ones. dbt runs it at execution only, after
    the model's parents were built and just before the view is created; never while compiling.
-#}
{% macro create_published_placeholders(audited_relations) %}
    {% if not execute %}
        {{ return('') }}
    {% endif %}
    {% for audited in audited_relations %}
        {% set twin = published(audited) %}
        {% if adapter.get_relation(twin.database, twin.schema, twin.identifier) is none %}
            {% if adapter.get_relation(audited.database, audited.schema, audited.identifier) is none %}
                {{ exceptions.raise_compiler_error(this.identifier ~ ' reads ' ~ twin ~ ', which is neither published nor built: '
                    ~ 'build ' ~ audited.identifier ~ ' first (dbt build)') }}
            {% endif %}
            {% do run_query('create schema if not exists ' ~ published_schema()) %}
            {% do run_query(create_published_table(twin, audited, gold_model_of(audited), if_not_exists=true)) %}
            {#- dbt's cache learns of it, so the publish of this same invocation knows what to replace -#}
            {% do adapter.cache_added(twin.incorporate(type='table')) %}
        {% endif %}
    {% endfor %}
    {{ return('') }}
{% endmacro %}


{#-
    create_published_table: the statement creating the published table `published` of gold model
    `node` from its audited table: empty with if_not_exists, else replacing it with the audited rows
-#}
{% macro create_published_table(published, audited, node, if_not_exists=false) %}
    {{ return(adapter.dispatch('create_published_table', 'ml_features')(published, audited, node, if_not_exists)) }}
{% endmacro %}

{% macro default__create_published_table(published, audited, node, if_not_exists) %}
    {{ return('create ' ~ ('table if not exists ' if if_not_exists else 'or replace table ') ~ published
        ~ ' as select * from ' ~ audited ~ (' where 1 = 0' if if_not_exists else '')) }}
{% endmacro %}

{#- BigQuery: partitioned and clustered as the model is configured (the audited table is), with
    dbt-bigquery's own partition_by / cluster_by rendering; a plain CTAS would be neither -#}
{% macro bigquery__create_published_table(published, audited, node, if_not_exists) %}
    {% set layout = partition_by(adapter.parse_partition_by(node.config.get('partition_by'))) ~ ' '
        ~ cluster_by(node.config.get('cluster_by')) %}
    {{ return('create ' ~ ('table if not exists ' if if_not_exists else 'or replace table ') ~ published
        ~ ' ' ~ layout | trim ~ ' as select * from ' ~ audited ~ (' where false' if if_not_exists else '')) }}
{% endmacro %}


{#-
    own_transaction: true in the on-run-end hook (no transaction is open there); false under
    `dbt run-operation`, where dbt has begun a transaction that publish_gold_now commits.
-#}
{% macro publish_tables(nodes, own_transaction=true) %}
    {{ return(adapter.dispatch('publish_tables', 'ml_features')(nodes, own_transaction)) }}
{% endmacro %}

{#-
    DuckDB: one transaction publishes every gold model (DDL is transactional), copying only what
    changed (docs/incremental.md):
    - a table dbt rebuilds whole: the audited table is renamed to `<name>__published` in the audit
      schema, `marts.<name>` becomes a view over it, and so does the audit schema's `<name>` (so
      dbt's tests, docs and partial builds still find the model) until the next build replaces that
      view with a new table;
    - an incremental model needs its own table for its next run: the published table gets the days
      this run built (meta.day_column between the run settings from_date and to_date: delete, then
      insert them), or a whole copy when the run was not given its days (a full refresh, a build by
      hand), the published table does not exist yet or its columns differ. The pipeline plans
      from_date from the loads since the last publish, so the days an unpublished build changed are
      built, tested and published by the next one. (A whole copy of a large gold table grows with
      the history, not with the day.)
    - a view (meta.published_view: the macro of its SQL, macros/features/gold_views.sql) is created
      in `marts` over the published versions of the gold models it reads, after them.
    Returns {model name: the predicate of the days it published} for the incremental models
    published by days (the others were replaced whole), for publish_log: the published file copies
    the same days (pipeline/warehouse/published.py).
-#}
{% macro default__publish_tables(nodes, own_transaction) %}
    {#- the days of each incremental model first: reading a table's columns begins dbt's transaction,
        committed (it changed nothing) before the publish's own one begins -#}
    {% set days_of = {} %}
    {% for node in nodes if node.config.materialized == 'incremental' %}
        {% set audited = adapter.get_relation(node.database, node.schema, node.alias) %}
        {% set existing = adapter.get_relation(node.database, published_schema(), node.alias) %}
        {% do days_of.update({node.unique_id: published_days(node, audited, existing)}) %}
    {% endfor %}
    {% if own_transaction and days_of.values() | reject('none') | list %}
        {% do adapter.commit() %}
    {% endif %}
    {% set statements = ['begin transaction'] if own_transaction else [] %}
    {% do statements.append('create schema if not exists ' ~ published_schema()) %}
    {% for node in nodes if node.config.materialized != 'view' %}
        {% set audited = adapter.get_relation(node.database, node.schema, node.alias) %}
        {% set published = audited.incorporate(path={'schema': published_schema()}, type='view') %}
        {% set existing = adapter.get_relation(node.database, published_schema(), node.alias) %}
        {% if node.config.materialized == 'incremental' %}
            {% set days = days_of[node.unique_id] %}
            {% if days %}
                {% do statements.append('delete from ' ~ existing ~ ' where ' ~ days) %}
                {% do statements.append('insert into ' ~ existing ~ ' select * from ' ~ audited ~ ' where ' ~ days) %}
            {% else %}
                {% if existing is not none %}
                    {% do statements.append('drop ' ~ ('view' if existing.is_view else 'table') ~ ' ' ~ existing) %}
                {% endif %}
                {% do statements.append('create table ' ~ published ~ ' as select * from ' ~ audited) %}
            {% endif %}
        {% else %}
            {% if existing is not none %}
                {% do statements.append('drop ' ~ ('view' if existing.is_view else 'table') ~ ' ' ~ existing) %}
            {% endif %}
            {% set version = audited.incorporate(path={'identifier': node.alias ~ '__published'}) %}
            {#- a view already: nothing was built since the last publish, which it shows -#}
            {#- the views name schema.table only (not the file's catalog): a copied or renamed
                warehouse file still reads them (macros/relocatable_refs.sql) -#}
            {% set version_in_file = version.include(database=false) %}
            {% if not audited.is_view %}
                {% do statements.append('drop table if exists ' ~ version) %}
                {% do statements.append('alter table ' ~ audited ~ ' rename to ' ~ version.identifier) %}
                {% do statements.append('create view ' ~ audited ~ ' as select * from ' ~ version_in_file) %}
            {% endif %}
            {% do statements.append('create view ' ~ published ~ ' as select * from ' ~ version_in_file) %}
        {% endif %}
    {% endfor %}
    {% for node in gold_views_in_order(nodes) %}
        {% set published = api.Relation.create(database=node.database, schema=published_schema(), identifier=node.alias, type='view') %}
        {% set existing = adapter.get_relation(node.database, published_schema(), node.alias) %}
        {% if existing is not none %}
            {% do statements.append('drop ' ~ ('view' if existing.is_view else 'table') ~ ' ' ~ existing) %}
        {% endif %}
        {% do statements.append('create view ' ~ published ~ ' as ' ~ published_view_sql(node)) %}
    {% endfor %}
    {% if own_transaction %}
        {% do statements.append('commit') %}
    {% endif %}
    {% do run_query(statements | join(';\n')) %}
    {% set published_by_days = {} %}
    {% for node in nodes if days_of.get(node.unique_id) %}
        {% do published_by_days.update({node.alias: days_of[node.unique_id]}) %}
    {% endfor %}
    {{ return(published_by_days) }}
{% endmacro %}


{#-
    published_days(node, audited, existing): the SQL predicate selecting the days of incremental gold
    model `node` this run built (its meta.day_column between from_date and to_date), or none when
    the publish must copy it whole: no given days, no meta.day_column, no published table yet; false
    (after reading the columns) when the published table's columns differ from the audited one's.
-#}
{% macro published_days(node, audited, existing) %}
    {% set day_column = node.config.meta.get('day_column') %}
    {% set from_date = run_setting('from_date') %}
    {% if not (day_column and from_date and existing is not none and not existing.is_view) %}
        {{ return(none) }}
    {% endif %}
    {% set audited_columns = adapter.get_columns_in_relation(audited) | map(attribute='name') | list %}
    {% set published_columns = adapter.get_columns_in_relation(existing) | map(attribute='name') | list %}
    {% if audited_columns != published_columns %}
        {{ return(false) }}
    {% endif %}
    {{ return(day_column ~ " between cast('" ~ from_date ~ "' as date) and cast('"
        ~ (run_setting('to_date') or from_date) ~ "' as date)") }}
{% endmacro %}


{#- the gold views among `nodes`, each after the gold views it reads -#}
{% macro gold_views_in_order(nodes) %}
    {% set views = nodes | selectattr('config.materialized', 'equalto', 'view') | list %}
    {% set view_ids = views | map(attribute='unique_id') | list %}
    {% set ordered = [] %}
    {% set placed = [] %}
    {% for _ in views %}
        {% for node in views if node.unique_id not in placed %}
            {% set waiting = [] %}
            {% for parent in node.depends_on.nodes if parent in view_ids and parent not in placed %}
                {% do waiting.append(parent) %}
            {% endfor %}
            {% if not waiting %}
                {% do ordered.append(node) %}
                {% do placed.append(node.unique_id) %}
            {% endif %}
        {% endfor %}
    {% endfor %}
    {{ return(ordered) }}
{% endmacro %}


{#-
    published_view_sql(node): the SQL of gold view `node` over the published versions of the models
    it reads: its meta.published_view macro called with them. Every model it reads must be gold, or
    the published view would read a table the next build changes before its tests ran.
-#}
{% macro published_view_sql(node) %}
    {% set macro_name = node.config.meta.get('published_view') %}
    {% if not macro_name %}
        {{ exceptions.raise_compiler_error('gold view ' ~ node.name ~ ' has no meta.published_view: the macro of its SQL') }}
    {% endif %}
    {% set gold = gold_models() %}
    {% set relations = {} %}
    {% for parent in node.depends_on.nodes %}
        {% if parent not in gold %}
            {{ exceptions.raise_compiler_error('gold view ' ~ node.name ~ ' reads ' ~ parent
                ~ ', which is not gold: a published view may read only published models') }}
        {% endif %}
        {% set parent_node = gold[parent] %}
        {% set relation = api.Relation.create(database=parent_node.database, schema=published_schema(), identifier=parent_node.alias) %}
        {% do relations.update({parent_node.name: without_database(relation)}) %}
    {% endfor %}
    {#- dbt resolves a macro by a name known when it parses: one branch per view macro -#}
    {% if macro_name == 'fct_transaction_features_view' %}
        {{ return(fct_transaction_features_view(relations)) }}
    {% elif macro_name == 'training_set_view' %}
        {{ return(training_set_view(relations)) }}
    {% endif %}
    {{ exceptions.raise_compiler_error('gold view ' ~ node.name ~ ': no macro ' ~ macro_name ~ ' in published_view_sql') }}
{% endmacro %}

{#-
    BigQuery: DDL is not allowed in a multi-statement transaction, so the published tables are
    refilled with DML in one transaction (`commit transaction` ends it: the macro is its own
    transaction in the hook and under `dbt run-operation` alike), after the DDL that lets them take
    the new rows:
    - a published table that is missing, laid out otherwise than the model (partitioning,
      clustering: dbt-bigquery's is_replaceable) or holding a column the audited table lacks or types
      differently is replaced whole, alone, by `create or replace table ... as select` (one atomic
      statement per table: readers see its old or its new rows);
    - a column the model gained is added (`alter table ... add column`, null in the old rows);
    - the rows are inserted by column name, so a column added or moved in a gold model lands in its
      own column, never in its neighbour's.
-#}
{% macro bigquery__publish_tables(nodes, own_transaction) %}
    {% set statements = ['begin transaction'] %}
    {% do run_query('create schema if not exists ' ~ published_schema()) %}
    {% for node in nodes if node.config.materialized != 'view' %}
        {% set audited = adapter.get_relation(node.database, node.schema, node.alias) %}
        {% set published = audited.incorporate(path={'schema': published_schema()}) %}
        {% set existing = adapter.get_relation(published.database, published.schema, published.identifier) %}
        {% set columns = adapter.get_columns_in_relation(audited) %}
        {% set published_types = {} %}
        {% if existing is not none %}
            {% for column in adapter.get_columns_in_relation(existing) %}
                {% do published_types.update({column.name | lower: column.data_type | lower}) %}
            {% endfor %}
        {% endif %}
        {% set audited_types = {} %}
        {% for column in columns %}
            {% do audited_types.update({column.name | lower: column.data_type | lower}) %}
        {% endfor %}
        {% set kept_columns_match = [] %}
        {% for name, data_type in published_types.items() %}
            {% do kept_columns_match.append(audited_types.get(name) == data_type) %}
        {% endfor %}
        {% set partition = adapter.parse_partition_by(node.config.get('partition_by')) %}
        {% if existing is none or false in kept_columns_match
            or not adapter.is_replaceable(existing, partition, node.config.get('cluster_by')) %}
            {% do run_query(create_published_table(published, audited, node)) %}
        {% else %}
            {% for column in columns if column.name | lower not in published_types %}
                {% do run_query('alter table ' ~ published ~ ' add column if not exists ' ~ adapter.quote(column.name) ~ ' ' ~ column.data_type) %}
            {% endfor %}
            {% set names = [] %}
            {% for column in columns %}
                {% do names.append(adapter.quote(column.name)) %}
            {% endfor %}
            {% do statements.append('delete from ' ~ published ~ ' where true') %}
            {% do statements.append('insert into ' ~ published ~ ' (' ~ names | join(', ') ~ ') select '
                ~ names | join(', ') ~ ' from ' ~ audited) %}
        {% endif %}
    {% endfor %}
    {% do statements.append('commit transaction') %}
    {% do run_query(statements | join(';\n')) %}
    {#- the gold views over the published tables: one atomic `create or replace view` each. BigQuery
        does not replace a table with a view: the empty placeholder table create_published_placeholders made
        before the first publish is dropped first (once; a reader then sees no table for a moment) -#}
    {% for node in gold_views_in_order(nodes) %}
        {% set published = api.Relation.create(database=node.database, schema=published_schema(), identifier=node.alias) %}
        {% set existing = adapter.get_relation(node.database, published_schema(), node.alias) %}
        {% if existing is not none and not existing.is_view %}
            {% do run_query('drop table ' ~ existing) %}
        {% endif %}
        {% do run_query('create or replace view ' ~ published ~ ' as ' ~ published_view_sql(node)) %}
    {% endfor %}
    {{ return({}) }}
{% endmacro %}


{#- published_days: {model: the predicate of the days published} (publish_tables), as JSON; a model
    not in it was published whole -#}
{% macro record_publish(status, reason, built, published_days=none) %}
    {% do log(reason, info=true) %}
    {% set sql %}
        create schema if not exists monitoring;
        create table if not exists monitoring.publish_log (
            invocation_id {{ dbt.type_string() }},
            logged_at {{ dbt.type_timestamp() }},
            status {{ dbt.type_string() }},
            reason {{ dbt.type_string() }},
            built_models {{ dbt.type_string() }}
        );
        alter table monitoring.publish_log add column if not exists published_days {{ dbt.type_string() }};
        insert into monitoring.publish_log (invocation_id, logged_at, status, reason, built_models, published_days)
        values (
            '{{ invocation_id }}',
            {{ dbt.current_timestamp() }},
            '{{ status }}',
            '{{ dbt.escape_single_quotes(reason) }}',
            '{{ built | join(",") }}',
            {{ "'" ~ dbt.escape_single_quotes(tojson(published_days)) ~ "'" if published_days is not none else 'null' }}
        )
    {% endset %}
    {% do run_query(sql) %}
{% endmacro %}


{% macro publish_gold_now() %}
    {% set gold = gold_models() %}
    {% set days = publish_tables(gold.values() | list, own_transaction=false) %}
    {% do record_publish('published', 'published ' ~ gold | length ~ ' gold models by run-operation', [], days) %}
    {% do commit_run_operation() %}
{% endmacro %}


{#-
    commit_run_operation: `dbt run-operation` does not commit on its own. On DuckDB the publish and
    its publish_log row run in the transaction dbt began, and this commit makes them visible at once.
    BigQuery has no transaction across requests: the publish committed its own (`commit transaction`
    in its script), and a `commit` sent alone fails ("no transaction is active"), so nothing is sent.
-#}
{% macro commit_run_operation() %}
    {{ return(adapter.dispatch('commit_run_operation', 'ml_features')()) }}
{% endmacro %}

{% macro default__commit_run_operation() %}
    {% do run_query('commit') %}
{% endmacro %}

{% macro bigquery__commit_run_operation() %}
{% endmacro %}
