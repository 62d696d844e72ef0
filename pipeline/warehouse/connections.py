"""Short-lived DuckDB connections to the warehouse that wait out another process's lock.

DuckDB lets one process write a database file at a time: while `dbt build`, a dlt load or a
DuckDB shell holds it, opening it fails with "Could not set lock on file". That is a transient
error, WarehouseLocked naming the file and the process holding it: Dagster retries the step with
backoff (orchestration/failures.py). No connection is kept open across a step, so the pipeline's
own steps (dlt, the dbt subprocess) never lock each other out.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from extract.load import duckdb_settings
from pipeline.transient import LOCK_MESSAGE, describe_lock


class WarehouseLocked(RuntimeError):
    """Another process holds the warehouse file (transient: the cause keeps DuckDB's lock message)."""


def locked_message(error: BaseException) -> str:
    return f"{describe_lock(str(error))}: stop that process or wait for it to finish"


@contextmanager
def connect(path: str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse in UTC, closed on exit; WarehouseLocked when another process holds it."""
    if not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = duckdb.connect(path, read_only=read_only, config=duckdb_settings())
    except duckdb.IOException as error:
        if LOCK_MESSAGE not in str(error):
            raise
        raise WarehouseLocked(locked_message(error)) from error
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
