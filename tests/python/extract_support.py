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


# ---------------------------------------------------------------- kills at dlt's milestones

# Moments of a dlt run a kill can land in, each right before a call of a dlt function: a job's rows
# are committed but dlt has not yet written that it committed them; the load is recorded in
# `_dlt_loads` but its package is not archived; the local pipeline state is about to be saved; a
# package is normalized but its extracted copy not yet deleted.
JOB_COMMITTED = "dlt.common.storages.load_package:PackageStorage.save_pending_transition"
LOAD_RECORDED = "dlt.common.storages.load_storage:LoadStorage.complete_load_package"
STATE_SAVED = "dlt.pipeline.pipeline:Pipeline._save_state"
# normalize renamed the normalized package into place and is about to delete the extracted one (it
# also deletes a stale normalized folder before it starts, with `not_exists_ok=True`)
PACKAGE_DELETED = "dlt.common.storages.load_package:PackageStorage.delete_package"
MILESTONES = (JOB_COMMITTED, LOAD_RECORDED, STATE_SAVED, PACKAGE_DELETED)


@dataclass(frozen=True)
class Milestone:
    """The `nth` call (1-based, over the whole CLI run) of `function` whose arguments mention `match`."""

    function: str
    nth: int
    match: str = ""

    def __str__(self) -> str:
        name = self.function.rsplit(".", 1)[-1]
        return f"{name}#{self.nth}{f'[{self.match}]' if self.match else ''}"


def hook_milestones(kill_at: Milestone | None, calls: list[tuple[str, str, float]]) -> None:
    """Wrap the MILESTONES functions in this process: record each call (function, its arguments' text,
    the system's monotonic clock) in `calls`; SIGKILL this process right before the call `kill_at` names."""
    import importlib
    import signal
    import threading
    import time

    lock = threading.Lock()
    counts: dict[str, int] = {}

    def wrap(function: str, original: object) -> object:
        def hooked(*args: object, **kwargs: object) -> object:
            text = " ".join([*(str(arg) for arg in args[1:]), *(f"{key}={value}" for key, value in kwargs.items())])
            with lock:
                calls.append((function, text, time.monotonic()))
                if kill_at is not None and kill_at.function == function and kill_at.match in text:
                    counts[function] = counts.get(function, 0) + 1
                    if counts[function] == kill_at.nth:
                        os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)  # type: ignore[operator]

        return hooked

    for function in MILESTONES:
        module_name, _, qualified = function.partition(":")
        owner_name, _, method = qualified.partition(".")
        owner = getattr(importlib.import_module(module_name), owner_name)
        setattr(owner, method, wrap(function, getattr(owner, method)))


def cli_with_milestones() -> None:
    """`python -m extract` with the milestones hooked (run by start_cli_at): kills at the milestone in
    `ML_FEATURES_TEST_KILL_AT` (function|nth|match), writes the calls seen to `ML_FEATURES_TEST_CALLS`."""
    import json

    from extract.load import main

    spec = os.environ.get("ML_FEATURES_TEST_KILL_AT", "")
    kill_at = None
    if spec:
        function, nth, match = spec.split("|")
        kill_at = Milestone(function, int(nth), match)
    calls: list[tuple[str, str, float]] = []
    hook_milestones(kill_at, calls)
    code = main(sys.argv[1:])
    if os.environ.get("ML_FEATURES_TEST_CALLS"):
        Path(os.environ["ML_FEATURES_TEST_CALLS"]).write_text(json.dumps(calls))
    sys.exit(code)


def start_cli_at(
    space: Workspace, sources: str, kill_at: Milestone | None = None, calls_file: Path | None = None, **settings: str
) -> subprocess.Popen[str]:
    """Start the real extract CLI with dlt's milestones hooked: it SIGKILLs itself right before the call
    `kill_at` names (None: runs to the end); the calls it saw go to `calls_file` as JSON."""
    hooks = {}
    if kill_at is not None:
        hooks["ML_FEATURES_TEST_KILL_AT"] = f"{kill_at.function}|{kill_at.nth}|{kill_at.match}"
    if calls_file is not None:
        hooks["ML_FEATURES_TEST_CALLS"] = str(calls_file)
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import extract_support; extract_support.cli_with_milestones()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "--sources", sources],
        cwd=REPO_ROOT,
        env=cli_environment(space, **settings, **hooks),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
