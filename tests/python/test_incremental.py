"""Incremental silver: after new dlt loads (a new day, late rows, re-delivered events, transactions
whose status changed), the incremental validated tables hold exactly the rows a full build makes,
and so do the tables built from them (the row reconciliation carries its older loads' checks over)."""

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import RUN_DATE, TEST_SCALE, TEST_SEED, Warehouse, demo_environment, new_app_load, table_hash

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.dbt_runner import run_dbt
from pipeline.monitoring import first_days

VALIDATED = ("intermediate.int_transactions_validated", "intermediate.int_events_validated")
DOWNSTREAM = ("intermediate.int_quarantined_rows", "monitoring.row_reconciliation", "marts_audit.training_set")
BUILD = ["build", "--exclude-resource-type", "unit_test"]


def test_incremental_validated_tables_equal_a_full_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    for key, value in demo_environment(data_dir).items():
        monkeypatch.setenv(key, value)
    warehouse = data_dir / "warehouse.duckdb"
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=dt.date(2026, 3, 1))
    for source in SOURCES:
        load_source(source)
    assert run_dbt(BUILD, dbt_vars={"run_date": "2026-03-01"}, quiet=True).success
    before = {relation: table_hash(warehouse, relation) for relation in VALIDATED}

    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=dt.date(2026, 3, 4))
    # at-least-once delivery across loads: a batch file of an early day lands again under a new
    # name, another is uploaded again under its own path (a newer modification time)
    first_batch, second_batch = sorted((data_dir / "demo" / "events").glob("date=*/*.parquet"))[:2]
    (data_dir / "demo" / "events" / "redelivered").mkdir()
    shutil.copy(first_batch, data_dir / "demo" / "events" / "redelivered" / first_batch.name)
    second_batch.touch()
    loaded = {source: load_source(source).rows for source in SOURCES}
    assert loaded["app"]["transactions"] > 0 and loaded["events"]["events"] > 0
    incremental_build = run_dbt(BUILD, dbt_vars={"run_date": "2026-03-04"}, quiet=True)
    assert incremental_build.success, incremental_build.failures
    incremental = {relation: table_hash(warehouse, relation) for relation in VALIDATED + DOWNSTREAM}
    assert all(incremental[relation] != before[relation] for relation in VALIDATED)  # the new loads arrived
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        [(redelivered, kept_first)] = connection.sql(
            "select count(*), count(*) filter (where kept.source_batch_file not like 'redelivered/%') "
            "from raw_events.events as raw inner join intermediate.int_events_validated as kept "
            "on raw.event_id = kept.event_id where raw._batch_file like 'redelivered/%'"
        ).fetchall()
        reuploaded = second_batch.relative_to(data_dir / "demo" / "events").as_posix()
        [(reuploaded_rows, reuploaded_loads, reuploaded_ids)] = connection.sql(
            "select count(*), count(distinct _dlt_load_id), count(distinct _dlt_id) from raw_events.events "
            "where _batch_file = ?",
            params=[reuploaded],
        ).fetchall()
        [(kept_from_reupload,)] = connection.sql(
            "select count(*) from intermediate.int_events_validated where source_batch_file = ? "
            "and source_load_id = (select max(_dlt_load_id) from raw_events.events)",
            params=[reuploaded],
        ).fetchall()
    assert redelivered == kept_first > 0  # the first delivery of an event stays the one kept
    # the re-uploaded file's rows landed in a second load with row ids of their own; the first kept
    assert reuploaded_loads == 2 and reuploaded_ids == reuploaded_rows and kept_from_reupload == 0
    # the reconciliation checked the new loads row by row and carried the older loads' checks over
    reconciliation_sql = (data_dir / "target" / "run" / "ml_features" / "models" / "monitoring").joinpath(
        "row_reconciliation.sql"
    )
    assert '"monitoring"."row_reconciliation" as previous' in reconciliation_sql.read_text()

    full_build = run_dbt([*BUILD, "--full-refresh"], dbt_vars={"run_date": "2026-03-04"}, quiet=True)
    assert full_build.success, full_build.failures
    full = {relation: table_hash(warehouse, relation) for relation in VALIDATED + DOWNSTREAM}
    assert incremental == full


def test_a_run_rebuilds_the_days_its_loads_change(warehouse_copy: Warehouse) -> None:
    """A status change rebuilds no day; a changed amount rebuilds its day, and so does a transaction
    whose unknown user arrived; a transaction moved to a later day rebuilds the day it was on: the
    days rebuilt then equal a full build."""
    by_day = ("intermediate.int_transactions_windowed", "marts.user_daily_features")
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        since = connection.sql("select cast(now() as timestamp)").fetchone()[0]  # the loads below come after

        def valid_on(day: str) -> int:
            return connection.execute(
                "select min(transaction_id) from intermediate.int_transactions_windowed where transaction_date = ?",
                [day],
            ).fetchone()[0]

        status_only, amount_changed = valid_on("2026-07-01"), valid_on("2026-08-20")
        moved = valid_on("2026-07-15")
        [(orphan, orphan_user, orphan_day)] = connection.sql(
            "select transaction_id, user_id, cast(created_at as date) from intermediate.int_transactions_validated "
            "where rejection_rule = 'unknown_user' order by created_at desc limit 1"
        ).fetchall()
        assert dt.date(2026, 7, 15) < orphan_day < dt.date(2026, 8, 20)
        connection.execute(
            "update raw_app.transactions set status = 'refunded', _dlt_load_id = ? where transaction_id = ?",
            [new_app_load(connection), status_only],
        )
        after_status = first_days(connection, since)
        assert after_status.affected is None  # a status changes no feature
        assert after_status.loaded == dt.date(2026, 7, 1)  # but its day is tested
        connection.execute(
            "update raw_app.transactions set amount = cast(cast(amount as double) * 2 as varchar), "
            "_dlt_load_id = ? where transaction_id = ?",
            [new_app_load(connection), amount_changed],
        )
        assert first_days(connection, since).affected == dt.date(2026, 8, 20)
        connection.execute(
            "insert into raw_app.users select * replace (? as user_id, ? as _dlt_load_id, ? || _dlt_id as _dlt_id) "
            "from raw_app.users limit 1",
            [orphan_user, new_app_load(connection), "arrived-"],
        )
        assert first_days(connection, since).affected == orphan_day
        connection.execute(
            "update raw_app.transactions set created_at = '2026-08-25 12:00:00', _dlt_load_id = ? "
            "where transaction_id = ?",
            [new_app_load(connection), moved],
        )
        assert first_days(connection, since).affected == dt.date(2026, 7, 15)

    models = ["--select", "int_transactions_validated", "int_transactions_windowed", "user_daily_features"]
    days = {"run_date": RUN_DATE, "from_date": "2026-07-15", "to_date": RUN_DATE}
    assert run_dbt(["run", *models], dbt_vars=days, quiet=True).success
    # a status-only change leaves its rows' load id as the windows were computed from: not compared
    rows = {relation: f"(select * exclude (source_load_id) from {relation})" for relation in by_day}
    rebuilt = {relation: table_hash(warehouse_copy.duckdb_path, rows[relation]) for relation in by_day}
    assert warehouse_copy.query(
        f"select count(*) from intermediate.int_transactions_windowed where transaction_id = '{orphan}'"
    ) == [(1,)]
    assert run_dbt(["run", *models, "--full-refresh"], dbt_vars={"run_date": RUN_DATE}, quiet=True).success
    assert rebuilt == {relation: table_hash(warehouse_copy.duckdb_path, rows[relation]) for relation in by_day}


def test_a_redelivered_event_file_is_counted_once_after_a_day_run_or_a_subset_build(warehouse_copy: Warehouse) -> None:
    """A load whose events were all delivered before (a batch file touched, or copied to a new `date=`
    folder) holds no row the validated table keeps. After a run of one day, or a build of only the
    events models, the next build must not read that load again (it counted its rows as duplicates
    of the kept deliveries a second time, and assert_duplicates_removed_match_staging failed every
    build until a full refresh): it equals a full refresh."""
    events_dir = warehouse_copy.data_dir / "demo" / "events"
    batches = sorted(events_dir.glob("date=*/*.parquet"))
    one_day = {"run_date": RUN_DATE, "from_date": RUN_DATE, "to_date": RUN_DATE, "tested_from_date": RUN_DATE}
    redelivered_folder = events_dir / "date=2026-09-30"
    redelivered_folder.mkdir()
    redeliveries = [
        (lambda: batches[3].touch(), BUILD, one_day),
        (
            lambda: shutil.copy(batches[7], redelivered_folder / batches[7].name),
            [*BUILD, "--select", "stg_events__events", "int_events_validated"],
            {"run_date": RUN_DATE},
        ),
    ]
    for redeliver, first_build, first_vars in redeliveries:
        redeliver()
        assert load_source("events").rows["events"] > 0
        first = run_dbt(first_build, dbt_vars=first_vars, quiet=True)
        assert first.success, first.failures
        next_build = run_dbt(BUILD, dbt_vars={"run_date": RUN_DATE}, quiet=True)
        assert next_build.success, next_build.failures
    incremental = {relation: table_hash(warehouse_copy.duckdb_path, relation) for relation in VALIDATED + DOWNSTREAM}
    full = run_dbt([*BUILD, "--full-refresh"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert full.success, full.failures
    assert incremental == {
        relation: table_hash(warehouse_copy.duckdb_path, relation) for relation in VALIDATED + DOWNSTREAM
    }
