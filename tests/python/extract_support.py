"""Helpers for the extract tests: an isolated warehouse per test, table fingerprints, the real CLI."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LINEAGE_COLUMNS = ("_dlt_load_id", "_dlt_id")
RAW_TABLES = {
    "app": ("users", "transactions"),
    "events": ("events",),
    "fx": ("rates",),
    "chargebacks": ("chargebacks",),
}


@dataclass
class Workspace:
    """One test's data dir: demo sources under `demo/`, the warehouse file, dlt's pipelines."""

    data_dir: Path

    @property
    def demo_dir(self) -> Path:
        return self.data_dir / "demo"

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def pipelines_dir(self) -> Path:
        return self.data_dir / ".dlt_pipelines"

    def environment(self) -> dict[str, str]:
        """The variables that point extract (and dbt) at this workspace."""
        return {
            "ML_FEATURES_DATA_DIR": str(self.data_dir),
            "ML_FEATURES_DUCKDB_PATH": str(self.duckdb_path),
            "DBT_TARGET_PATH": str(self.data_dir / "target"),
        }

    def query(self, sql: str) -> list[tuple]:
        """Rows of a query against the warehouse, read-only."""
        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.sql(sql).fetchall()

    def columns(self, relation: str) -> list[str]:
        """The column names of a warehouse table."""
        return [row[0] for row in self.query(f"describe {relation}")]


def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "ws") -> Workspace:
    """A fresh workspace under `tmp_path`, set in this process's environment while `monkeypatch` lasts."""
    space = Workspace(tmp_path / name)
    space.data_dir.mkdir(parents=True, exist_ok=True)
    use(space, monkeypatch)
    return space


def use(space: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point extract (and dbt) in this process at `space`."""
    for key, value in space.environment().items():
        monkeypatch.setenv(key, value)


def table_fingerprint(space: Workspace, relation: str) -> tuple[int, str]:
    """(row count, md5 of every row's text in a fixed order), leaving out dlt's load id and row id."""
    excluded = ", ".join(LINEAGE_COLUMNS)
    [(count, digest)] = space.query(
        f"""
        select count(*), md5(coalesce(string_agg(row_text, chr(10) order by row_text), ''))
        from (select cast(t as varchar) as row_text from (select * exclude ({excluded}) from {relation}) as t)
        """
    )
    return count, digest


def completed_rows(space: Workspace, source: str, table: str) -> int:
    """Rows of a raw table that staging can see: those of loads recorded as completed in `_dlt_loads`."""
    [(count,)] = space.query(
        f"""
        select count(*) from raw_{source}.{table}
        where _dlt_load_id in (select load_id from raw_{source}._dlt_loads where status = 0)
        """
    )
    return count


def cli_environment(space: Workspace, **settings: str) -> dict[str, str]:
    """The environment of a `python -m extract` subprocess: this workspace plus dlt settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SOURCES__", "RUNTIME__"))}
    env.update(space.environment())
    env.update(settings)
    return env


def start_cli(space: Workspace, sources: str, **settings: str) -> subprocess.Popen[str]:
    """Start the real extract CLI in the repository root (where `.dlt/` lives)."""
    return subprocess.Popen(
        [sys.executable, "-m", "extract", "--sources", sources],
        cwd=REPO_ROOT,
        env=cli_environment(space, **settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
