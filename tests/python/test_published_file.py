"""The published file (pipeline/warehouse/published.py) after a new day: the tables dbt published by days get
only those days, the rest is copied whole, the gold views are views over the file's own tables; and
every relation of the file equals the warehouse's `marts`. A file that missed a publish is copied
whole again."""

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from conftest import TEST_SCALE, TEST_SEED, demo_environment, table_hash

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import run_dbt
from pipeline.warehouse.monitoring import first_days, last_publish_time
from pipeline.warehouse.published import Publication, published_path, refresh_published

BUILD = ["build", "--exclude-resource-type", "unit_test"]


def build_day(warehouse: Path, day: dt.date) -> None:
    """`dbt build` for `day` with the days the pipeline would plan (orchestration/dbt_assets.py run_settings)."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        days = first_days(connection, last_publish_time(connection))
    from_date = min(days.affected or day, day)
    settings = {"run_date": day.isoformat(), "from_date": from_date.isoformat(), "to_date": day.isoformat()}
    assert run_dbt(BUILD, dbt_vars=settings, quiet=True).success


def relations(path: Path, catalog: str) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as connection:
        rows = connection.execute(
            "select table_name, table_type from information_schema.tables where table_catalog = ? "
            "and table_schema = 'marts'",
            [catalog],
        ).fetchall()
    return dict(rows)


def assert_file_equals_marts(warehouse: Path, publication: Publication) -> None:
    published = published_path()
    in_file = relations(published, "gold")
    assert sorted(in_file) == sorted(publication.tables)
    for name in in_file:
        assert table_hash(published, f"marts.{name}") == table_hash(warehouse, f"marts.{name}"), name
    with duckdb.connect(str(published), read_only=True) as connection:
        [(invocation_id, by_days)] = connection.sql(
            "select invocation_id, copied_by_days from publication.version"
        ).fetchall()
    assert invocation_id == publication.invocation_id
    assert json.loads(by_days) == publication.by_days


def test_a_new_day_copies_its_days_and_the_file_equals_marts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    for key, value in demo_environment(data_dir).items():
        monkeypatch.setenv(key, value)
    warehouse = data_dir / "warehouse.duckdb"
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=dt.date(2026, 3, 1))
    for source in SOURCES:
        load_source(source)
    assert run_dbt(BUILD, dbt_vars={"run_date": "2026-03-01"}, quiet=True).success
    first = refresh_published(str(warehouse))
    assert first is not None and first.by_days == []  # the first version: every table whole
    assert_file_equals_marts(warehouse, first)
    views = {name for name, kind in relations(published_path(), "gold").items() if kind == "VIEW"}
    assert {"fct_transaction_features", "training_set"} <= views  # computed where read, as in the warehouse

    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=dt.date(2026, 3, 4))
    for source in SOURCES:
        load_source(source)
    build_day(warehouse, dt.date(2026, 3, 4))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        [(logged,)] = connection.sql(
            "select published_days from monitoring.publish_log where status = 'published' "
            "order by logged_at desc limit 1"
        ).fetchall()
    days = json.loads(logged)
    assert days  # dbt published the incremental gold by days
    second = refresh_published(str(warehouse))
    assert second is not None
    print(f"copied by days: {second.by_days}; dbt's days: {days}")
    assert sorted(second.by_days) == sorted(days)
    assert_file_equals_marts(warehouse, second)

    # two publishes (the day built again), the file refreshed after the second only: it missed one,
    # so it is copied whole
    build_day(warehouse, dt.date(2026, 3, 4))
    build_day(warehouse, dt.date(2026, 3, 4))
    third = refresh_published(str(warehouse))
    assert third is not None and third.by_days == []
    assert_file_equals_marts(warehouse, third)
