"""Incremental silver: after new dlt loads (a new day, late rows, re-delivered events, transactions
whose status changed), the incremental validated tables hold exactly the rows a full build makes,
and so do the tables built from them (the row reconciliation counts every load again, by aggregates)."""

import datetime as dt
import shutil
import time
from pathlib import Path

import duckdb
import pytest
from conftest import RUN_DATE, TEST_SCALE, TEST_SEED, Warehouse, demo_environment, new_app_load, table_hash

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import run_dbt
from pipeline.warehouse.monitoring import first_days

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


def test_a_day_run_publishes_the_gold_a_full_refresh_makes(warehouse_copy: Warehouse) -> None:
    """A pipeline day rebuilds and publishes only the days it is given (from_date..to_date), yet the
    published gold equals a full refresh of the same data when what a day changes in the old rows is
    not on those days: five more days of labels mature (the run date moves), so the splits move and
    the parameters are refitted (every row's amount_usd_scaled); a chargeback reported late labels a
    transaction of April; a user's age is corrected. fct_transaction_features and training_set apply
    these where they are read (views over the stored windows: docs/incremental.md)."""
    gold = ("marts.fct_transaction_features", "marts.training_set", "marts.user_daily_features")
    # the pipeline's day as `pipeline run` passes it (orchestration/dbt_assets.py): the last day again
    later, last_day = "2026-10-05", "2026-08-31"
    day = {"run_date": later, "from_date": last_day, "to_date": last_day, "tested_from_date": last_day}
    [(fitted_before, mean_before)] = warehouse_copy.query(
        "select fitted_by_invocation_id, amount_usd_mean from marts.preprocessing_parameters"
    )
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        [(labelled, user, reported_at)] = connection.sql(
            "select transaction_id, user_id, cast(created_at + interval 10 day as varchar) "
            "from marts.fct_transaction_features where transaction_date = '2026-04-01' and not is_fraud "
            "order by transaction_id limit 1"
        ).fetchall()
        load_id = f"{time.time():.6f}"
        connection.execute(
            "insert into raw_chargebacks._dlt_loads (load_id, schema_name, status, inserted_at, schema_version_hash) "
            "select ?, schema_name, 0, now(), schema_version_hash from raw_chargebacks._dlt_loads limit 1",
            [load_id],
        )
        connection.execute(
            "insert into raw_chargebacks.chargebacks select ?, ?, 'fraud', 'late/chargebacks.csv', 0, 'late-0', ?",
            [labelled, reported_at, load_id],
        )
        connection.execute(
            "update raw_app.users set age = 33, updated_at = cast(now() as varchar), _dlt_load_id = ? "
            "where cast(user_id as varchar) = ?",
            [new_app_load(connection), user],
        )
    day_build = run_dbt(BUILD, dbt_vars=day, quiet=True)
    assert day_build.success, day_build.failures
    [(status,)] = warehouse_copy.query("select status from monitoring.publish_log order by logged_at desc limit 1")
    assert status == "published"
    [(fitted, mean)] = warehouse_copy.query(
        "select fitted_by_invocation_id, amount_usd_mean from marts.preprocessing_parameters"
    )
    assert fitted != fitted_before and mean != mean_before  # refitted on a train split that moved
    assert warehouse_copy.query(
        f"select is_fraud, age from marts.training_set where transaction_id = '{labelled}'"
    ) == [(True, 33.0)]
    without_load_ids = {relation: f"(select * exclude (source_load_id) from {relation})" for relation in gold}
    without_load_ids["marts.fct_transaction_features"] = "marts.fct_transaction_features"
    without_load_ids["marts.training_set"] = "marts.training_set"
    published = {relation: table_hash(warehouse_copy.duckdb_path, rows) for relation, rows in without_load_ids.items()}

    refresh = run_dbt([*BUILD, "--full-refresh"], dbt_vars={"run_date": later}, quiet=True)
    assert refresh.success, refresh.failures
    assert published == {
        relation: table_hash(warehouse_copy.duckdb_path, rows) for relation, rows in without_load_ids.items()
    }
