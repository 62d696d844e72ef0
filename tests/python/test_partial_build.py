"""Partial builds are correct: an orchestrator materializes subsets of the dbt graph (`dbt build
--select ...`), so whatever subset was built after new dlt loads, the next full build passes and
publishes the gold a full build makes that never had the partial step (and a full refresh makes)."""

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from conftest import RUN_DATE, Warehouse, demo_environment, new_app_load, table_hash

from extract.load import load_source
from pipeline.warehouse.dbt_runner import run_dbt

BUILD = ["build", "--exclude-resource-type", "unit_test"]
GOLD = ("fct_transaction_features", "training_set", "user_daily_features", "dataset_splits", "preprocessing_parameters")
BUILD_COLUMNS = {"fitted_by_invocation_id", "fitted_at"}  # name the build, not the data


def build(args: list[str]) -> None:
    result = run_dbt(args, dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert result.success, (args, result.failures)


def gold(data_dir: Path) -> dict[str, tuple[int, str]]:
    return {
        table: table_hash(data_dir / "warehouse.duckdb", f"marts.{table}", BUILD_COLUMNS.__contains__) for table in GOLD
    }


def use(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(data_dir).items():
        monkeypatch.setenv(key, value)


def assert_partial_then_full_equals_full(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, partial_builds: list[list[str]], full_refresh: bool
) -> None:
    """From the loads now in `warehouse`: the partial builds then a full build, in one copy; a full
    build alone in another (then, with `full_refresh`, a full refresh): all publish the same gold."""
    reference = warehouse.data_dir.parent / "reference"
    shutil.copytree(warehouse.data_dir, reference)
    for selection in partial_builds:
        build([*BUILD, "--select", *selection])
    build(BUILD)
    after_partial = gold(warehouse.data_dir)

    use(reference, monkeypatch)
    build(BUILD)
    assert gold(reference) == after_partial
    if full_refresh:
        build([*BUILD, "--full-refresh"])
        assert gold(reference) == after_partial


def redeliver_an_event_file(warehouse: Warehouse) -> None:
    """The issue's case: one events Parquet file copied into a new `date=` folder, loaded by dlt
    (every event in it was delivered before)."""
    events_dir = warehouse.data_dir / "demo" / "events"
    batch = sorted(events_dir.glob("date=*/*.parquet"))[-2]
    (events_dir / "date=2026-09-30").mkdir()
    shutil.copy(batch, events_dir / "date=2026-09-30" / batch.name)
    assert load_source("events").rows["events"] > 0


def change_old_transactions(warehouse: Warehouse) -> None:
    """New app loads that change old days (beyond reprocess_days): a transaction moved to a later day,
    an amount changed, and the user of a transaction quarantined as unknown_user arrives."""
    with duckdb.connect(str(warehouse.duckdb_path)) as connection:

        def valid_on(day: str) -> str:
            return connection.execute(
                "select min(transaction_id) from intermediate.int_transactions_cleaned where transaction_date = ?",
                [day],
            ).fetchone()[0]

        moved, amount_changed = valid_on("2026-07-15"), valid_on("2026-07-01")
        [(orphan_user,)] = connection.sql(
            "select user_id from intermediate.int_transactions_validated where rejection_rule = 'unknown_user' "
            "and user_id is not null and created_at < '2026-08-01' order by created_at desc limit 1"
        ).fetchall()
        connection.execute(
            "update raw_app.transactions set created_at = '2026-08-25 12:00:00', _dlt_load_id = ? "
            "where transaction_id = ?",
            [new_app_load(connection), moved],
        )
        connection.execute(
            "update raw_app.transactions set amount = cast(cast(amount as double) * 2 as varchar), "
            "_dlt_load_id = ? where transaction_id = ?",
            [new_app_load(connection), amount_changed],
        )
        connection.execute(
            "insert into raw_app.users select * replace (? as user_id, ? as _dlt_load_id, ? || _dlt_id as _dlt_id) "
            "from raw_app.users limit 1",
            [orphan_user, new_app_load(connection), "arrived-"],
        )


@pytest.mark.parametrize(
    ("new_loads", "partial_builds", "full_refresh"),
    [
        # test_incremental.py compares the incremental build with a full refresh for re-delivered events
        pytest.param(
            redeliver_an_event_file,
            [["stg_events__events", "int_events_validated"]],
            False,
            id="events-redelivered",
        ),
        pytest.param(
            change_old_transactions,
            [["stg_app__transactions+1"], ["int_transactions_windowed", "user_daily_features"]],
            True,
            id="app-transactions-then-days",
        ),
    ],
)
def test_a_full_build_after_a_partial_build_publishes_what_a_full_build_does(
    warehouse_copy: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    new_loads: Callable[[Warehouse], None],
    partial_builds: list[list[str]],
    full_refresh: bool,
) -> None:
    new_loads(warehouse_copy)
    assert_partial_then_full_equals_full(warehouse_copy, monkeypatch, partial_builds, full_refresh)
