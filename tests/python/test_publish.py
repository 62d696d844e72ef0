"""Write-audit-publish: consumers read `marts`, which changes only when a full build passed its tests."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from conftest import RUN_DATE, Warehouse, demo_environment, table_hash

from pipeline.warehouse.dbt_runner import PROJECT_DIR, run_dbt

GOLD = ("training_set", "fct_transaction_features", "user_daily_features", "preprocessing_parameters", "dataset_splits")


def published(warehouse: Warehouse) -> dict[str, tuple[int, str]]:
    return {name: table_hash(warehouse.duckdb_path, f"marts.{name}") for name in GOLD}


def audited(warehouse: Warehouse) -> dict[str, tuple[int, str]]:
    return {name: table_hash(warehouse.duckdb_path, f"marts_audit.{name}") for name in GOLD}


def last_publish(warehouse: Warehouse) -> tuple[str, str]:
    [(status, reason)] = warehouse.query(
        "select status, reason from monitoring.publish_log order by logged_at desc limit 1"
    )
    return status, reason


def test_a_failing_test_publishes_nothing_then_a_good_build_publishes(warehouse_copy: Warehouse) -> None:
    before = published(warehouse_copy)
    assert before == audited(warehouse_copy) and before["training_set"][0] > 0
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute(
            "insert into raw_fx.rates select date, currency, rate_to_usd * 2, _dlt_load_id, _dlt_id || '-dup' "
            "from raw_fx.rates where currency = 'EUR' order by date limit 1"
        )
    later = {"run_date": "2026-10-15"}
    failed = run_dbt(["build"], dbt_vars=later, quiet=True)
    assert not failed.success
    assert any("unique_combination_stg_fx__rates" in failure for failure in failed.failures), failed.failures
    assert published(warehouse_copy) == before
    status, reason = last_publish(warehouse_copy)
    assert status == "not_published" and "unique_combination_stg_fx__rates" in reason
    [(offending,)] = warehouse_copy.query(
        "select count(*) from test_failures.unique_combination_stg_fx__rates_rate_date__currency"
    )
    assert offending == 1

    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute("delete from raw_fx.rates where _dlt_id like '%-dup'")
    fixed = run_dbt(["build"], dbt_vars=later, quiet=True)
    assert fixed.success, fixed.failures
    after = published(warehouse_copy)
    assert after == audited(warehouse_copy)
    assert after["training_set"] != before["training_set"]
    assert last_publish(warehouse_copy)[0] == "published"


def test_a_partial_build_does_not_publish(warehouse_copy: Warehouse) -> None:
    before = published(warehouse_copy)
    partial = run_dbt(["build", "-s", "dataset_splits"], dbt_vars={"run_date": "2026-10-15"}, quiet=True)
    assert partial.success
    assert published(warehouse_copy) == before
    status, reason = last_publish(warehouse_copy)
    assert status == "not_published" and "1 of the 12 gold models" in reason


def test_a_publish_killed_midway_leaves_one_consistent_version(warehouse_copy: Warehouse) -> None:
    """SIGKILL `dbt run-operation publish_gold_now` at several moments: readers always see one version."""
    old = published(warehouse_copy)
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        # a new audited version, as a build leaves it: a table in place of the view over the published
        # one (dataset_splits: training_set loses its test days), the tables stored by day changed
        # (fct_transaction_windows, so fct_transaction_features: half its rows); big enough that
        # copying the incremental user_daily_features takes a while
        connection.execute(
            "delete from marts_audit.fct_transaction_windows where cast(transaction_id as bigint) % 2 = 1"
        )
        connection.execute(
            "drop view marts_audit.dataset_splits; create table marts_audit.dataset_splits as "
            "select * from marts_audit.dataset_splits__published where split <> 'test'"
        )
        connection.execute(
            "insert into marts_audit.user_daily_features "
            "select days.* from marts_audit.user_daily_features as days, range(300)"
        )
    new = audited(warehouse_copy)
    assert new != old
    command = [
        str(Path(sys.executable).parent / "dbt"),
        "run-operation",
        "publish_gold_now",
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
    ]
    outcomes = []
    for delay in (0.0, 0.3, 0.6, 1.0):
        process = subprocess.Popen(
            command, cwd=PROJECT_DIR, env=os.environ.copy(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        for line in process.stdout:  # the operation starts once dbt has parsed the project
            if "Found " in line:
                break
        time.sleep(delay)
        killed = process.poll() is None
        if killed:
            process.send_signal(signal.SIGKILL)
        process.wait()
        state = published(warehouse_copy)
        assert state in (old, new), f"a mixed version after a kill {delay} s into the operation"
        outcomes.append((delay, killed, "new" if state == new else "old"))
        if state == new:
            break
    assert any(killed for _, killed, _ in outcomes), outcomes
    completed = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stdout[-2000:]
    assert published(warehouse_copy) == new
    # the gold views are views in both schemas (the published one over the published tables)
    kinds = dict(
        warehouse_copy.query(
            "select schema_name || '.' || view_name, 'view' from duckdb_views() "
            "where view_name = 'fct_transaction_features'"
        )
    )
    assert kinds == {"marts.fct_transaction_features": "view", "marts_audit.fct_transaction_features": "view"}


def test_a_day_run_publishes_only_the_days_it_built_and_tested(warehouse_copy: Warehouse) -> None:
    """A run of one day tests and publishes only that day of the gold stored by day (the publish
    delete+inserts it, it does not copy the tables whole), and the tables dbt rebuilds whole (the
    splits and parameters, from every validated transaction) are tested whole: a bad row on an old
    day that no build wrote (an upstream bug, a hand edit) fails the run's tests when a table rebuilt
    whole reads it, and is otherwise never published: `marts` keeps the old days it published."""
    before = published(warehouse_copy)
    # what `pipeline run --date 2026-09-30` passes (pipeline.stages.dbt_vars, dbt_build)
    one_day = {"run_date": RUN_DATE, "from_date": RUN_DATE, "to_date": RUN_DATE, "tested_from_date": RUN_DATE}

    def duplicate_a_row_of_april(table: str, day: str) -> None:
        with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
            connection.execute(f"insert into {table} select * from {table} where {day} = '2026-04-15' limit 1")

    # feeds the gold tables rebuilt whole (the days of dataset_splits, the fitted parameters): caught
    duplicate_a_row_of_april("intermediate.int_transactions_validated", "cast(created_at as date)")
    build = run_dbt(["build", "--exclude-resource-type", "unit_test"], dbt_vars=one_day, quiet=True)
    assert not build.success
    assert "unique_int_transactions_validated" in " ".join(build.failures), build.failures
    assert published(warehouse_copy) == before
    assert last_publish(warehouse_copy)[0] == "not_published"
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:  # the upstream bug is fixed
        connection.execute(
            "delete from intermediate.int_transactions_validated where rowid in (select max(rowid) "
            "from intermediate.int_transactions_validated group by transaction_id having count(*) > 1)"
        )

    # old days of the tables stored by day: the day run neither tests nor publishes them
    stored_by_day = ("marts.fct_transaction_windows", "marts.user_daily_features")
    published_before = {relation: table_hash(warehouse_copy.duckdb_path, relation) for relation in stored_by_day}
    duplicate_a_row_of_april("marts_audit.fct_transaction_windows", "transaction_date")
    duplicate_a_row_of_april("marts_audit.user_daily_features", "feature_date")
    build = run_dbt(["build", "--exclude-resource-type", "unit_test"], dbt_vars=one_day, quiet=True)
    assert build.success, build.failures
    assert last_publish(warehouse_copy)[0] == "published"
    [(audited_duplicates,)] = warehouse_copy.query(
        "select count(*) - count(distinct transaction_id) from marts_audit.fct_transaction_features"
    )
    assert audited_duplicates == 1  # still in the audit schema, which consumers do not read
    for relation, key in (
        ("marts.fct_transaction_features", "transaction_id"),
        ("marts.training_set", "transaction_id"),
        ("marts.user_daily_features", "user_id || feature_date"),
    ):
        [(duplicates,)] = warehouse_copy.query(f"select count(*) - count(distinct {key}) from {relation}")
        assert duplicates == 0, relation
    # the day built (the run date) has no transactions: every published row is the one published before
    assert {
        relation: table_hash(warehouse_copy.duckdb_path, relation) for relation in stored_by_day
    } == published_before


def relations(warehouse: Warehouse) -> set[tuple[str, str, str]]:
    """Every schema, table and view in the warehouse, as (schema, name, kind): "" for a schema alone."""
    return set(warehouse.query("select schema_name, '', '' from information_schema.schemata")) | set(
        warehouse.query("select table_schema, table_name, table_type from information_schema.tables")
    )


def test_compiling_creates_nothing_and_the_first_run_reads_empty_published_tables(warehouse_copy: Warehouse) -> None:
    """dbt compile and dbt docs generate write nothing to a built warehouse that was never published
    (`marts` dropped): the published tables the realtime view reads are created, empty, when the view
    is (its pre-hook, at execution), so before the first publish it serves no rows, never unaudited
    ones, and the first build's publish replaces them."""
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute("drop schema marts cascade")
    before = relations(warehouse_copy)
    for command in (["compile"], ["docs", "generate"]):
        compiled = run_dbt(command, dbt_vars={"run_date": RUN_DATE}, quiet=True)
        assert compiled.success, compiled.failures
        assert relations(warehouse_copy) == before, command

    run = run_dbt(["run", "-s", "realtime_transaction_features"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert run.success, run.failures
    for name in ("fct_transaction_features", "preprocessing_parameters", "fct_transaction_windows"):
        assert warehouse_copy.query(f"select count(*) from marts.{name}") == [(0,)], name
    served = dict(
        warehouse_copy.query("select served_from, count(*) from marts.realtime_transaction_features group by 1")
    )
    assert served == {}  # nothing published: no batch rows, and no fitted parameters for the speed layer

    # the first publish of a build that creates them too (the pre-hook and the publish in one invocation)
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute("drop schema marts cascade")
    build = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert build.success, build.failures
    assert published(warehouse_copy) == audited(warehouse_copy)
    served = dict(
        warehouse_copy.query("select served_from, count(*) from marts.realtime_transaction_features group by 1")
    )
    assert served.get("batch", 0) > 0


def test_compiling_a_fresh_warehouse_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    for command in (["compile"], ["docs", "generate"]):
        compiled = run_dbt(command, dbt_vars={"run_date": RUN_DATE}, quiet=True)
        assert compiled.success, compiled.failures
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.sql("select table_schema, table_name from information_schema.tables").fetchall() == []
        assert "marts" not in {
            name for (name,) in connection.sql("select schema_name from information_schema.schemata").fetchall()
        }
