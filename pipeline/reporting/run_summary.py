"""What a build left behind that a run summary must show: the quarantine per source table, the tests
that warned, and for a failed node the database's own message and the rows a failing test kept.

Read from the warehouse right after `dbt build`, whether it passed or failed:

    app.transactions  69,659 of 69,659 raw rows quarantined: missing_key 69,659 (e.g. "transaction_id is empty")
"""

import duckdb

from pipeline.console import plain
from pipeline.warehouse.connections import relation_exists
from pipeline.warehouse.monitoring import quarantine_counts

MAX_RULES = 3
MAX_KEPT_ROWS = 3
MAX_LINE = 300
# dbt's first line of an error names the node and its file; the cause follows it
DBT_ERROR_HEADERS = ("Runtime Error in ", "Database Error in ", "Compilation Error in ", "Failure in ")


def raw_rows(connection: duckdb.DuckDBPyConnection, source_table: str) -> int | None:
    """The raw rows of source table `<source>.<table>` as monitoring.row_reconciliation counts them (a
    rejected file and a record the ingestion service refused count as one row of the table they were
    for); before that model was built, the rows of raw_<source>.<table>. None when neither exists."""
    if relation_exists(connection, "monitoring", "row_reconciliation"):
        [(count,)] = connection.execute(
            "select sum(raw_rows) from monitoring.row_reconciliation where source_table = ?", [source_table]
        ).fetchall()
        if count is not None:
            return int(count)
    source, _, table = source_table.partition(".")
    if not relation_exists(connection, f"raw_{source}", table):
        return None
    [(count,)] = connection.execute(f'select count(*) from "raw_{source}"."{table}"').fetchall()
    return int(count)


def quarantine_by_table(connection: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Per source table with quarantined rows: the count, the raw rows, the top rules with their
    counts and one sample reason of the top rule; [] when the quarantine was never built."""
    # each table's rules, the most frequent first
    rows = sorted(quarantine_counts(connection), key=lambda row: (row[0], -row[2], row[1]))
    tables: dict[str, dict[str, object]] = {}
    for source_table, rule, count, reason in rows:
        entry = tables.setdefault(
            source_table,
            {
                "table": source_table,
                "quarantined": 0,
                "raw_rows": raw_rows(connection, source_table),
                "rules": [],
                "sample_reason": reason,
            },
        )
        entry["quarantined"] = int(entry["quarantined"]) + int(count)  # type: ignore[call-overload]
        entry["rules"].append([rule, int(count)])  # type: ignore[union-attr]
    return list(tables.values())


def quarantine_lines(tables: list[dict[str, object]], stale: bool = False) -> list[str]:
    """The summary's lines for `quarantine_by_table`; none when nothing is quarantined. `stale`: the
    build did not rebuild the quarantine (it failed upstream of it), so it is an earlier build's."""
    if not tables:
        return []
    earlier = " as an earlier build left it (this build did not rebuild it)" if stale else ""
    lines = [f"  quarantined (intermediate.int_quarantined_rows{earlier}), by source table:"]
    for entry in tables:
        rules: list[list] = entry["rules"]  # type: ignore[assignment]
        shown = ", ".join(f"{rule} {count:,}" for rule, count in rules[:MAX_RULES])
        more = f", {len(rules) - MAX_RULES} more rule(s)" if len(rules) > MAX_RULES else ""
        raw = entry["raw_rows"]
        of = f" of {raw:,} raw rows" if isinstance(raw, int) else ""
        lines.append(
            f"    {entry['table']:<24} {int(entry['quarantined']):,}{of}: {shown}{more}"  # type: ignore[call-overload]
            f" (e.g. {clip(str(entry['sample_reason']), 160)!r})"
        )
    return lines


def warned_tests(
    node_results: list[dict[str, object]], connection: duckdb.DuckDBPyConnection | None = None
) -> list[list[object]]:
    """[test name, failing rows, the first row it kept (or "")] of the tests that ended with status
    warn; the kept row only with a connection and when the test's table exists."""
    warned: list[list[object]] = []
    for node in node_results:
        if node["resource_type"] != "test" or node["status"] != "warn":
            continue
        kept = kept_relation(connection, node.get("relation_name")) if connection else None
        rows = kept_rows(connection, *kept) if connection and kept else []
        warned.append([test_name(node), int(node.get("failures") or 0), rows[0] if rows else ""])  # type: ignore[call-overload]
    return warned


def warned_lines(warned: list[list[object]]) -> list[str]:
    if not warned:
        return []
    lines = [f"  tests that warned ({len(warned)}):"]
    for name, rows, sample in warned:
        lines.append(f"    warn   {name}: {rows:,} failing row{'s' if rows != 1 else ''}")
        if sample:
            lines.append(f"           {sample}")
    return lines


def test_name(node: dict[str, object]) -> str:
    return str(node["unique_id"]).split(".")[2]


def clip(text: str, width: int = MAX_LINE) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def root_cause(message: str) -> str:
    """The database's own message from a dbt node's message: dbt's header line (node and file), the
    "Did you mean" hint and the caret line dropped; the error line kept whole, long SQL cut."""
    lines = [line.strip() for line in plain(message).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith(DBT_ERROR_HEADERS):
        lines = lines[1:]
    kept = [line for line in lines if not line.startswith("Did you mean") and set(line) != {"^"}]
    errors = [line for line in kept if "Error" in line or "error" in line]
    head = errors[0] if errors else (kept[0] if kept else "")
    rest = [clip(line, 120) for line in kept if line != head][:2]
    return " | ".join([head, *rest]) if head else ""


def kept_relation(connection: duckdb.DuckDBPyConnection, relation_name: object) -> tuple[str, str] | None:
    """(schema, table) of a test's stored failures when that table exists in the warehouse."""
    if not relation_name:
        return None
    parts = [part.strip('"') for part in str(relation_name).split(".")]
    if len(parts) < 2:
        return None
    schema, table = parts[-2], parts[-1]
    return (schema, table) if relation_exists(connection, schema, table) else None


def kept_rows(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    """A few of the rows a failing test stored, as `column=value` pairs."""
    result = connection.execute(f'select * from "{schema}"."{table}" limit {MAX_KEPT_ROWS}')
    columns = [column[0] for column in result.description]
    return [clip(", ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True)), 240) for row in result.fetchall()]


def failed_node_lines(failed: list[dict[str, object]], connection: duckdb.DuckDBPyConnection | None) -> list[str]:
    """One line per failed node with its cause, the table its failing rows are kept in (only when it
    exists) and a few of those rows."""
    lines = []
    for node in failed:
        kind, name = str(node["resource_type"]), test_name(node)
        failures = int(node.get("failures") or 0)  # type: ignore[call-overload]
        if kind == "test" and node["status"] == "fail":
            what = f"{failures:,} failing row{'s' if failures != 1 else ''}"
        else:
            what = root_cause(str(node["message"])) or str(node["message"])
        kept = kept_relation(connection, node.get("relation_name")) if connection and kind == "test" else None
        where = f"  (rows kept: select * from {kept[0]}.{kept[1]})" if kept and node["status"] == "fail" else ""
        lines.append(f"  {node['status']:<6} {'test ' if kind == 'test' else kind + ' '}{name}: {what}{where}")
        if kept and node["status"] == "fail" and connection is not None:
            lines += [f"           {row}" for row in kept_rows(connection, *kept)]
    return lines
