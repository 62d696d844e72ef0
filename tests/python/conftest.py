"""Shared fixtures: a real demo data set, extracted by dlt and built by dbt, at a small scale."""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from demo.generate import generate
from extract.load import SOURCES, SourceLoad, load_source
from pipeline.dbt_runner import DbtSummary, run_dbt

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SCALE = int(os.environ.get("ML_FEATURES_TEST_SCALE", "3000"))
TEST_SEED = 7
RUN_DATE = "2026-09-30"


@dataclass
class Warehouse:
    """A built warehouse: where it is, what dlt loaded and what dbt built."""

    data_dir: Path
    duckdb_path: Path
    loads: list[SourceLoad]
    build: DbtSummary

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.sql(sql).fetchall()


def demo_environment(data_dir: Path) -> dict[str, str]:
    """Environment variables that point every source and the warehouse at `data_dir`."""
    return {
        "ML_FEATURES_DATA_DIR": str(data_dir),
        "ML_FEATURES_DUCKDB_PATH": str(data_dir / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(data_dir / "target"),
    }


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """Generate demo data, extract every source with dlt and `dbt build`, once per test session."""
    data_dir = tmp_path_factory.mktemp("warehouse")
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in demo_environment(data_dir).items():
            patch.setenv(key, value)
        loads = [load_source(name) for name in SOURCES]
        build = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
        yield Warehouse(data_dir, data_dir / "warehouse.duckdb", loads, build)


def table_hash(
    duckdb_path: Path | str, relation: str, leave_out: Callable[[str], bool] | None = None
) -> tuple[int, str]:
    """Row count and an order-independent sha256 of a relation's rows (a table or a subquery); with
    `leave_out`, a table's columns for which `leave_out(name)` is true are left out (e.g. those naming
    the load or the build rather than the data)."""
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        if leave_out is not None:
            schema, table = relation.split(".")
            kept = [
                f'"{name}"'
                for (name,) in connection.execute(
                    "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                    "order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if not leave_out(name)
            ]
            relation = f"(select {', '.join(kept)} from {relation})"
        [(rows, digest)] = connection.sql(
            "select count(*), sha256(coalesce(string_agg(md5(cast(r as varchar)), ',' "
            f"order by md5(cast(r as varchar))), '')) from {relation} as r"
        ).fetchall()
    return rows, digest


@pytest.fixture
def warehouse_copy(built_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """A private copy of the built warehouse (DuckDB file, demo sources, dlt state) for tests that change it."""
    shutil.copytree(built_warehouse.data_dir, tmp_path / "data")  # dbt's target too: partial parsing
    data_dir = tmp_path / "data"
    for key, value in demo_environment(data_dir).items():
        monkeypatch.setenv(key, value)
    return Warehouse(data_dir, data_dir / "warehouse.duckdb", built_warehouse.loads, built_warehouse.build)


def new_app_load(connection: duckdb.DuckDBPyConnection) -> str:
    """A completed dlt load of the app source, as dlt records one (its id is the unix time)."""
    load_id = f"{time.time():.6f}"
    connection.execute(
        "insert into raw_app._dlt_loads (load_id, schema_name, status, inserted_at, schema_version_hash) "
        "select ?, schema_name, 0, now(), schema_version_hash from raw_app._dlt_loads limit 1",
        [load_id],
    )
    return load_id
