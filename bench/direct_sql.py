"""dbt's overhead: the SQL one `dbt build` ran, run again directly on DuckDB, without dbt.

`python -m bench.direct_sql --warehouse W --target-path T` reads dbt's artifacts of a finished
`dbt build --full-refresh` (run_results.json for the order the nodes ran in, manifest.json for
their compiled SQL) and replays the same work on a warehouse that holds only the raw tables:
seeds loaded from their CSV, every model created as its table or view, the snapshot's first
version, every data test's failing rows stored and counted (dbt's store_failures), and the
publish of the gold tables in one transaction. It prints one JSON document: the seconds per node
and in all. Nothing dbt adds (parsing, introspection, comments from persist_docs, the run's
artifacts) is done, which is the point: the difference is dbt's cost.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from extract.load import duckdb_settings  # noqa: E402

# what a build materializes; unit tests (excluded from the pipeline's build), hooks and exposures are not SQL to replay
REPLAYED = ("seed.", "model.", "snapshot.", "test.")
# dbt's timestamp strategy, first run: every row is the current version, valid from its updated_at
SNAPSHOT_COLUMNS = (
    "md5(cast(user_id as varchar) || '|' || cast(updated_at as varchar)) as dbt_scd_id, "
    "updated_at as dbt_updated_at, updated_at as dbt_valid_from, cast(null as timestamp) as dbt_valid_to"
)


def statements(node: dict) -> list[str]:
    """The SQL that materializes one node of the manifest, as dbt-duckdb would on a full refresh."""
    kind, relation, sql = node["resource_type"], node["relation_name"], node.get("compiled_code")
    schema = relation.rsplit(".", 1)[0]
    create_schema = f"create schema if not exists {schema}"
    if kind == "seed":
        path = REPO_ROOT / node["original_file_path"]
        return [create_schema, f"create or replace table {relation} as select * from read_csv('{path}', header = true)"]
    if kind == "snapshot":
        return [create_schema, f"create or replace table {relation} as select *, {SNAPSHOT_COLUMNS} from ({sql})"]
    if kind == "test":
        return [create_schema, f"create or replace table {relation} as {sql}", f"select count(*) from {relation}"]
    materialized = node["config"]["materialized"]
    if materialized == "view":
        return [create_schema, f"create or replace view {relation} as {sql}"]
    if materialized in ("table", "incremental"):
        return [create_schema, f"create or replace table {relation} as {sql}"]
    raise ValueError(f"{node['unique_id']}: materialization {materialized!r} is not replayed")


def gold(manifest: dict) -> list[dict]:
    """The models the on-run-end hook publishes (meta.publish)."""
    return [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"].get("meta", {}).get("publish")
    ]


def published_placeholders(node: dict, manifest: dict) -> list[str]:
    """What the pre-hook of a view over `marts` does before the view is created
    (create_published_placeholders): an empty copy of each audited table it reads, until the first publish."""
    return [
        "create schema if not exists marts",
        *(
            f"create table if not exists marts.{model['alias']} as select * from {model['relation_name']} where 1 = 0"
            for model in gold(manifest)
            if f'"marts"."{model["alias"]}"' in (node.get("compiled_code") or "")
        ),
    ]


def publish(manifest: dict) -> list[str]:
    """The on-run-end publish (macros/publish.sql) in one transaction: a table dbt rebuilds whole is
    renamed to `<name>__published`, with views over it in `marts` and the audit schema; an
    incremental one is copied (a full refresh publishes every day); a gold view is created in `marts`.
    The replay starts from the raw tables: `marts` holds placeholders."""
    statements = ["begin transaction", "create schema if not exists marts"]
    for node in gold(manifest):
        name, audited = node["alias"], node["relation_name"]
        statements.append(f"drop table if exists marts.{name}")
        if node["config"]["materialized"] == "view":  # the publish renders it over marts.*: as cheap
            statements.append(f"create view marts.{name} as select * from {audited}")
            continue
        if node["config"]["materialized"] == "incremental":
            statements.append(f"create table marts.{name} as select * from {audited}")
            continue
        version = f'"{node["database"]}"."{node["schema"]}"."{name}__published"'
        statements += [
            f"alter table {audited} rename to {name}__published",
            f"create view {audited} as select * from {version}",
            f"create view marts.{name} as select * from {version}",
        ]
    return [*statements, "commit"]


def replay(warehouse: Path, target_path: Path) -> dict[str, object]:
    """Run the on-run-start hooks and the nodes of the last `dbt build` in the order dbt finished them;
    seconds per node."""
    manifest = json.loads((target_path / "manifest.json").read_text())
    results = json.loads((target_path / "run_results.json").read_text())["results"]
    nodes = {**manifest["nodes"], **manifest["sources"]}
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with duckdb.connect(str(warehouse), config=duckdb_settings()) as connection:
        connection.execute("set TimeZone = 'UTC'")
        for result in results:
            unique_id = result["unique_id"]
            if "-on-run-start-" in unique_id and result.get("compiled_code"):
                connection.execute(result["compiled_code"])  # e.g. the stream's raw tables, created empty
                continue
            if not unique_id.startswith(REPLAYED):
                continue
            node_started = time.perf_counter()
            node = nodes[unique_id]
            for statement in [*published_placeholders(node, manifest), *statements(node)]:
                connection.execute(statement).fetchall()
            seconds[unique_id] = time.perf_counter() - node_started
        node_started = time.perf_counter()
        for statement in publish(manifest):
            connection.execute(statement)
        seconds["publish"] = time.perf_counter() - node_started
    return {"seconds": time.perf_counter() - started, "nodes": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a DuckDB file with only the raw tables")
    parser.add_argument("--target-path", type=Path, required=True, help="dbt's artifacts of the build to replay")
    args = parser.parse_args(argv)
    print(json.dumps(replay(args.warehouse, args.target_path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
