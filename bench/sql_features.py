"""The SQL side of the pandas race: the project's own SQL for exactly raw -> fct_transaction_features.

`python -m bench.sql_features --warehouse W --target-path T [--compare-with B]` takes dbt's
manifest of a finished full build (T) and runs, in one DuckDB connection on a warehouse holding
only the raw tables (W, named like the built one: the compiled SQL names the catalog), the
compiled SQL of `fct_transaction_features` and of every model, seed and snapshot it is built from
(its ancestors in the manifest, whatever they are today), in dependency order. The models in
between are views, so DuckDB reads only the raw columns the features need, except that a model
two or more of the chain read is computed once into a temporary table (in memory, spilled under
memory_limit), as a notebook keeps a frame it uses twice; the snapshot is its first version
(every user's current row, valid from its updated_at) and the features are written as one table.
`--as-built` materializes every model as the build does instead (tables of every column): the
seconds per node then say which model is slow. Nothing else of the build is done: no silver table of every
column, rule and reason, no quarantine, monitoring, tests or publish.

With `--compare-with`, the table is checked equal, row for row in every column, to the built
warehouse's `marts.fct_transaction_features` (not timed). It prints one JSON document: seconds in
all and per node, the rows written, the chain, and the problems found (none when equal).
"""

import argparse
import json
import sys
import time
from graphlib import TopologicalSorter
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.direct_sql import published_placeholders, statements  # noqa: E402
from extract.load import duckdb_settings  # noqa: E402

FEATURES = "model.ml_features.fct_transaction_features"
BUILT = ("model.", "seed.", "snapshot.")
# columns that name the run rather than the data (none today: checked against the built table's columns)
NOT_COMPARED = {"source_load_id"}


def chain(manifest: dict, end: str = FEATURES) -> list[str]:
    """`end` and every model, seed and snapshot it is built from, in an order that builds parents first."""
    parents = manifest["parent_map"]
    seen, todo = set(), [end]
    while todo:
        node = todo.pop()
        if node not in seen and node.startswith(BUILT):
            seen.add(node)
            todo += parents.get(node, [])
    graph = {node: [parent for parent in parents.get(node, []) if parent in seen] for node in seen}
    return list(TopologicalSorter(graph).static_order())


def node_statements(node: dict, manifest: dict, readers: int, last: bool, as_built: bool = False) -> list[str]:
    """The node's SQL as direct_sql replays it, except (unless `as_built`) for a model before the last:
    one that `readers` > 1 models of the chain read is computed once into a temporary table (in
    memory, spilled to disk under memory_limit), as a notebook keeps a frame it uses twice, with a
    view of its name over it; any other is a view. The last (the features) is always written as a
    table, whatever its materialization (a view in the build): the output both sides write."""
    if last:
        table = node | {"config": node["config"] | {"materialized": "table"}}
        return [*published_placeholders(node, manifest), *statements(table)]
    if as_built or node["resource_type"] != "model":
        return [*published_placeholders(node, manifest), *statements(node)]
    view = node | {"config": node["config"] | {"materialized": "view"}}
    if readers <= 1:
        return [*published_placeholders(node, manifest), *statements(view)]
    temporary = f'temp.main."{node["alias"]}"'
    return [
        *published_placeholders(node, manifest),
        f"create or replace temp table {node['alias']} as {node['compiled_code']}",
        *statements(view | {"compiled_code": f"select * from {temporary}"}),
    ]


def on_run_start(target_path: Path) -> list[str]:
    """The build's on-run-start hooks as dbt compiled them (e.g. the stream's raw tables, created
    empty, which staging reads)."""
    results_path = target_path / "run_results.json"
    if not results_path.exists():
        return []
    results = json.loads(results_path.read_text())["results"]
    return [
        result["compiled_code"]
        for result in results
        if "-on-run-start-" in result["unique_id"] and result.get("compiled_code")
    ]


def run(warehouse: Path, target_path: Path, as_built: bool = False) -> dict[str, object]:
    """Build the chain on `warehouse`; the seconds per node and in all, and the rows of the features."""
    manifest = json.loads((target_path / "manifest.json").read_text())
    order = chain(manifest)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with duckdb.connect(str(warehouse), config=duckdb_settings()) as connection:
        connection.execute("set TimeZone = 'UTC'")
        for hook in on_run_start(target_path):
            connection.execute(hook)
        for unique_id in order:
            node_started = time.perf_counter()
            readers = len([child for child in manifest["child_map"][unique_id] if child in order])
            node = manifest["nodes"][unique_id]
            for statement in node_statements(node, manifest, readers, unique_id == FEATURES, as_built):
                connection.execute(statement).fetchall()
            seconds[unique_id] = time.perf_counter() - node_started
        total = time.perf_counter() - started
        relation = manifest["nodes"][FEATURES]["relation_name"]
        rows = connection.sql(f"select count(*) from {relation}").fetchone()[0]
    return {"seconds": total, "nodes": seconds, "rows": rows, "relation": relation, "chain": order}


def compare(warehouse: Path, relation: str, built: Path) -> list[str]:
    """Where `relation` in `warehouse` and marts.fct_transaction_features in `built` differ: rows of
    one missing from the other (as multisets, in every column both have), and columns of one only.
    The built warehouse is the connection's own database: its gold is a view naming schema.table
    only, which resolves in the database it is read from. Under the same memory_limit as the SQL
    side: the `except all` of two tables of every feature row spills to disk instead of holding them."""
    with duckdb.connect(str(built), read_only=True, config=duckdb_settings()) as connection:
        connection.execute("set TimeZone = 'UTC'")
        connection.execute(f"attach '{warehouse}' as sql_side (read_only)")
        schema, table = [part.strip('"') for part in relation.split(".")[1:]]
        ours_relation = f'sql_side."{schema}"."{table}"'
        reference_relation = "marts.fct_transaction_features"
        mine = [column[0] for column in connection.execute(f"select * from {ours_relation} limit 0").description]
        theirs = [column[0] for column in connection.execute(f"select * from {reference_relation} limit 0").description]
        problems = [f"column {name} only in the SQL side's table" for name in mine if name not in theirs]
        problems += [f"column {name} only in the built table" for name in theirs if name not in mine]
        selected = ", ".join(f'"{name}"' for name in mine if name in theirs and name not in NOT_COMPARED)
        ours = f"select {selected} from {ours_relation}"
        reference = f"select {selected} from {reference_relation}"
        for label, query in [
            ("only in the SQL side's table", f"{ours} except all {reference}"),
            ("only in the built table", f"{reference} except all {ours}"),
        ]:
            count = connection.sql(f"select count(*) from ({query})").fetchone()[0]
            if count:
                example = connection.sql(f"{query} limit 1").fetchone()
                problems.append(f"{count:,} row(s) {label}, e.g. {example}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a DuckDB file with only the raw tables")
    parser.add_argument("--target-path", type=Path, required=True, help="dbt's artifacts of a full build")
    parser.add_argument(
        "--compare-with", type=Path, help="a built warehouse whose marts.fct_transaction_features to equal"
    )
    parser.add_argument(
        "--as-built", action="store_true", help="materialize every model as the build does (to find a slow one)"
    )
    args = parser.parse_args(argv)
    figures = run(args.warehouse, args.target_path, as_built=args.as_built)
    problems = compare(args.warehouse, str(figures["relation"]), args.compare_with) if args.compare_with else []
    for problem in problems:
        print(f"the SQL side and the build disagree: {problem}", file=sys.stderr)
    print(json.dumps(figures | {"problems": problems}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
