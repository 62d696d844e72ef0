"""Day planning (pipeline/warehouse/monitoring.py first_days) reads dbt's views in models/monitoring/planning/:
the build makes them, dbt's lineage shows what they read, a run reads only its new loads' rows
(the load-id filter reaches the raw scans), and a view or model the plan needs that is not built
yet means every day."""

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import pytest
from conftest import Warehouse, new_app_load

from pipeline.warehouse.monitoring import FIRST_DAY, DaysToRun, first_days, planning_relations, read_manifest

PLANNING_VIEWS = {"planning_load_days", "planning_transaction_changes", "planning_user_arrivals"}
# what the plan reads, and the day-partitioned models a first build must build whole
NEEDED = {
    ("staging", "stg_app__transactions"),
    ("staging", "stg_app__users"),
    ("staging", "stg_events__events"),
    ("staging", "stg_fx__rates"),
    ("staging", "stg_stream__transactions"),
    ("staging", "stg_stream__events"),
    ("intermediate", "int_transactions_validated"),
    ("intermediate", "int_transactions_windowed"),
    ("marts_audit", "fct_transaction_windows"),
    ("marts_audit", "user_daily_features"),
}


def stream_load(connection: duckdb.DuckDBPyConnection, transaction_id: str, created_at: str) -> str:
    """A completed load of the real-time consumer holding one pushed transaction (and nothing else)."""
    load_id = f"{dt.datetime.now(dt.UTC).timestamp():.6f}"
    connection.execute(
        "insert into raw_stream._dlt_loads (load_id, schema_name, status, inserted_at) values (?, 'stream', 0, now())",
        [load_id],
    )
    connection.execute(
        "insert into raw_stream.transactions (transaction_id, user_id, amount, currency, status, device_type, "
        "created_at, updated_at, _dlt_id, _dlt_load_id) "
        "select ?, user_id, '12.50', 'USD', 'completed', 'mobile', ?, ?, ?, ? from intermediate.int_users_cleaned "
        "order by user_id limit 1",
        [transaction_id, created_at, created_at, f"row-{transaction_id}", load_id],
    )
    return load_id


def test_the_planning_views_are_built_and_in_the_lineage(warehouse_copy: Warehouse) -> None:
    built = warehouse_copy.query(
        "select table_name, table_type from information_schema.tables where table_schema = 'monitoring' "
        "and table_name like 'planning%'"
    )
    assert dict(built) == dict.fromkeys(PLANNING_VIEWS, "VIEW")
    relations = planning_relations(read_manifest())
    assert relations[0] == ("monitoring", "planning_load_days")
    assert NEEDED <= set(relations)
    manifest = json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "manifest.json").read_text())
    owners = {node["name"]: node["config"]["meta"].get("owner") for node in manifest["nodes"].values()}
    assert all(owners[name] for name in PLANNING_VIEWS)


def test_a_run_plans_from_the_rows_of_its_new_loads_only(warehouse_copy: Warehouse) -> None:
    """Nothing new plans nothing; a pushed transaction on a day plans from that day; the filter on the
    new loads' ids is applied at the raw tables' scans (not after reading every row)."""
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        since = connection.sql("select cast(now() as timestamp)").fetchone()[0]
        assert first_days(connection, since) == DaysToRun(None, None)
        load_id = stream_load(connection, "planned-1", "2026-08-10 09:00:00")
        assert first_days(connection, since) == DaysToRun(dt.date(2026, 8, 10), dt.date(2026, 8, 10))
        [(_, plan)] = connection.execute(
            "explain (format json) select min(affected_date), min(loaded_date) from monitoring.planning_load_days "
            "where source_name = 'stream' and source_load_id in (?)",
            [load_id],
        ).fetchall()
    filters = {scan["Table"]: str(scan.get("Filters")) for scan in table_scans(json.loads(plan))}
    # the stream's raw transactions (its events are empty: DuckDB leaves them out; the other sources' are pruned)
    raw = {table: filters[table] for table in ("transactions", "events") if table in filters}
    assert "transactions" in raw and all(f"_dlt_load_id='{load_id}'" in found for found in raw.values()), filters


def table_scans(nodes: list[dict]) -> list[dict]:
    """The `extra_info` of every table scan of a DuckDB plan (EXPLAIN (format json))."""
    scans = []
    for node in nodes:
        if node.get("name", "").strip() == "SEQ_SCAN":
            scans.append(node["extra_info"])
        scans += table_scans(node.get("children", []))
    return scans


def test_a_relation_the_plan_needs_not_built_yet_means_every_day(warehouse_copy: Warehouse) -> None:
    """A model added since (here: a day-partitioned gold model the plan does not read), or a warehouse
    built before the planning views: the run builds every day, as a first build does."""
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        since = connection.sql("select cast(now() as timestamp)").fetchone()[0]
        new_app_load(connection)
        assert first_days(connection, since) == DaysToRun(None, None)
        for kind, relation in [("table", "marts_audit.user_daily_features"), ("view", "monitoring.planning_load_days")]:
            name = relation.split(".")[1]
            connection.execute(f"alter {kind} {relation} rename to {name}_away")
            assert first_days(connection, since) == DaysToRun(FIRST_DAY, FIRST_DAY), relation
            connection.execute(f"alter {kind} {relation}_away rename to {name}")
            assert first_days(connection, since) == DaysToRun(None, None)


def test_a_run_plans_with_the_manifest_it_builds_with(
    warehouse_copy: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run passes the manifest its asset graph was made from: the plan must not depend on what dbt's
    target folder holds at that moment (a process that imported the graph before DBT_TARGET_PATH
    pointed elsewhere planned every day, silently); a manifest without the planning view is an error."""
    manifest = read_manifest()
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        since = connection.sql("select cast(now() as timestamp)").fetchone()[0]
        stream_load(connection, "planned-2", "2026-08-11 09:00:00")
        monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "elsewhere"))
        assert first_days(connection, since, manifest) == DaysToRun(dt.date(2026, 8, 11), dt.date(2026, 8, 11))
        with pytest.raises(RuntimeError, match="no model planning_load_days"):
            first_days(connection, since)  # no manifest in the target folder now
