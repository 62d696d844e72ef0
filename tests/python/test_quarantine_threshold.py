"""Honest outcomes: a build whose quarantine holds most of a table fails and publishes nothing.

Through a real app database (the demo's SQLite file, changed as a user's data could be), the real
extract and `dbt build`: 10% of the transactions in an unknown currency warns (the stored row says
which table, how much, the top rule and a reason) and publishes; every transaction in an unknown
currency fails the build naming the rule and the table, and `marts` keeps the last good version.
"""

import datetime as dt
import sqlite3
from pathlib import Path

import duckdb
import pytest
from conftest import Warehouse, table_hash
from extract_support import Workspace, workspace

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import DbtSummary, run_dbt

RUN_DATE = "2026-09-30"
TEST = "quarantined_share_per_table_below_thresholds"
GOLD = ("fct_transaction_features", "training_set", "user_daily_features")


def set_unknown_currency(space: Workspace, where: str) -> int:
    """Give the app's transactions matching `where` the unknown currency 'ZZZ' (a new version of each
    row: updated now, so the next extract reads them); how many there were."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(space.demo_dir / "app.sqlite") as app:
        changed = app.execute(f"update transactions set currency = 'ZZZ', updated_at = ? where {where}", [now])
        return changed.rowcount


def threshold_test_status(build: DbtSummary) -> str:
    [status] = [node["status"] for node in build.node_results if f".{TEST}" in str(node["unique_id"])]
    return str(status)


def breaches(space: Workspace) -> dict[str, dict]:
    """The rows the test stored, by source table."""
    with duckdb.connect(str(space.duckdb_path), read_only=True) as connection:
        result = connection.sql(f"select * from test_failures.{TEST}")
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]
    return {row["source_table"]: row for row in rows}


def published(space: Workspace) -> dict[str, tuple[int, str]]:
    return {name: table_hash(space.duckdb_path, f"marts.{name}") for name in GOLD}


def last_publish(space: Workspace) -> str:
    [(status,)] = space.query("select status from monitoring.publish_log order by logged_at desc limit 1")
    return status


def test_a_mostly_quarantined_table_fails_the_build_and_a_small_share_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=7, scale=300)
    with sqlite3.connect(space.demo_dir / "app.sqlite") as app:
        [(transactions,)] = app.execute("select count(*) from transactions").fetchall()
    # one transaction in ten, by id order: above the 5% warning threshold, far below the 50% error
    changed = set_unknown_currency(space, "transaction_id % 10 = 0")
    assert transactions // 10 - 1 <= changed <= transactions // 10 + 1
    for name in SOURCES:
        load_source(name)

    warned = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert warned.success, warned.failures
    assert threshold_test_status(warned) == "warn"
    row = breaches(space)["app.transactions"]
    # the table's rows: what staging kept of it (valid + quarantined, duplicates not counted)
    assert space.query(
        "select sum(staged_rows), sum(quarantined_rows) from monitoring.row_reconciliation "
        "where source_table = 'app.transactions'"
    ) == [(row["table_rows"], row["quarantined_rows"])]
    assert 0.05 < row["quarantined_share"] < 0.5
    assert row["quarantined_share"] == pytest.approx(row["quarantined_rows"] / row["table_rows"])
    # (a changed row the demo made bad in another way keeps the rule it breaks first)
    assert row["top_rule"] == "unknown_currency" and changed - 3 <= row["top_rule_rows"] <= changed
    assert row["is_above_max_share"] is False
    assert "is not a known currency" in row["sample_reason"]
    assert "app.transactions" in row["failure_message"] and "above the warning threshold 5.0%" in row["failure_message"]
    assert last_publish(space) == "published"
    good = published(space)
    assert good["fct_transaction_features"][0] > 0

    # every transaction in an unknown currency: the build fails, names the rule and the table
    set_unknown_currency(space, "true")
    load_source("app")
    failed = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert not failed.success
    assert threshold_test_status(failed) == "fail"
    [message] = [failure for failure in failed.failures if TEST in failure]
    assert "max(quarantined_share) > 0.5" in message
    rows = breaches(space)
    transactions_row = rows["app.transactions"]
    assert transactions_row["quarantined_share"] == 1.0 and transactions_row["is_above_max_share"] is True
    assert transactions_row["top_rule"] == "unknown_currency"
    assert "app.transactions has" in transactions_row["failure_message"]
    assert "top rule unknown_currency" in transactions_row["failure_message"]
    assert "above the error threshold 50.0%" in transactions_row["failure_message"]
    # nothing is published: marts keeps the last good version
    assert last_publish(space) == "not_published"
    assert published(space) == good

    # the thresholds are vars: with max_quarantined_share 1 the same quarantine only warns
    relaxed = run_dbt(
        ["test", "--select", TEST], dbt_vars={"run_date": RUN_DATE, "max_quarantined_share": 1.0}, quiet=True
    )
    assert relaxed.success, relaxed.failures
    assert threshold_test_status(relaxed) == "warn"


def test_a_source_turned_off_is_not_a_breach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events and chargebacks turned off load empty tables: 0 of 0 rows quarantined passes."""
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=7, scale=300)
    monkeypatch.setenv("SOURCES__EVENT_STREAM__ENABLED", "false")
    monkeypatch.setenv("SOURCES__BUCKET_FILES__ENABLED", "false")
    for name in SOURCES:
        load_source(name)
    build = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert build.success, build.failures
    assert threshold_test_status(build) == "pass"
    assert space.query("select count(*) from raw_events.events") == [(0,)]


def test_a_data_set_without_ages_warns_and_builds(warehouse_copy: Warehouse) -> None:
    """Missing ages are imputed by design (is_age_imputed): a data property, so its tests warn, never fail."""
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute("update raw_app.users set age = null")
    build = run_dbt(["build", "--select", "int_users_cleaned"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert build.success, build.failures
    statuses = {
        str(node["unique_id"]).split(".")[2]: node["status"]
        for node in build.node_results
        if "null_rate_below_int_users_cleaned_age" in str(node["unique_id"])
    }
    assert sorted(statuses.values()) == ["warn", "warn"], statuses
    assert warehouse_copy.query("select count(*), count(age) from intermediate.int_users_cleaned")[0][1] == 0
