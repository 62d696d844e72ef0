"""Short-lived DuckDB connections to the warehouse that wait out another process's lock.

DuckDB lets one process write a database file at a time: while `dbt build`, a dlt load or a
DuckDB shell holds it, opening it fails with "Could not set lock on file". The pipeline retries
with exponential backoff, says so on every attempt, and in the end fails with one line naming
the file and the process holding it. It never keeps a connection open across a stage, so its own
steps (dlt, the dbt subprocess) never lock each other out.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from extract.load import duckdb_settings
from pipeline.retry import GaveUp, RetryPolicy, describe_lock, retrying


class WarehouseLocked(RuntimeError):
    """Another process held the warehouse file through every retry."""


def locked_message(error: BaseException, policy: RetryPolicy) -> str:
    waited = sum(policy.wait(attempt) for attempt in range(1, policy.attempts))
    return (
        f"{describe_lock(str(error.__cause__ or error))}: gave up after {policy.attempts} attempts over "
        f"{waited:g} s. Stop that process or wait for it to finish, then run again."
    )


@contextmanager
def connect(
    path: str, read_only: bool = False, policy: RetryPolicy | None = None, prefix: str = ""
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse in UTC, closed on exit; WarehouseLocked when the lock never frees."""
    policy = policy or RetryPolicy.from_env()
    if not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = retrying(
            lambda: duckdb.connect(path, read_only=read_only, config=duckdb_settings()),
            "opening the warehouse",
            policy,
            prefix,
        )
    except GaveUp as error:
        raise WarehouseLocked(locked_message(error, policy)) from error
    try:
        connection.execute("set TimeZone = 'UTC'; set enable_progress_bar = false")
        yield connection
    finally:
        connection.close()


def relation_exists(connection: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    [(found,)] = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
    ).fetchall()
    return bool(found)


def tables_in(connection: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    rows = connection.execute(
        "select table_name from information_schema.tables where table_schema = ? order by table_name", [schema]
    ).fetchall()
    return [name for (name,) in rows]
