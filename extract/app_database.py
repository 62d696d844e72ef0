"""App database source: `users` and `transactions` from any SQLAlchemy URL.

Both tables change after insert, so they are read incrementally on `updated_at` and merged on
their keys: an updated row replaces the older version in the raw table and never duplicates it
(of two versions of a key read in one run, the one with the greatest `updated_at` wins).

Rows travel as Arrow tables, never as Python dicts: by default through ConnectorX, which reads
SQLite, PostgreSQL, MySQL and SQL Server straight into Arrow, and through SQLAlchemy's cursor
(dlt's `pyarrow` backend) for any other database. Column types come from the database's own
schema, never from the values: a text column stays text when a non-numeric value turns up in it.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import sqlalchemy as sa
from dlt.sources import DltResource
from dlt.sources.credentials import ConnectionStringCredentials
from dlt.sources.sql_database import sql_table

from extract.arrow_rows import random_prefix, with_row_ids
from extract.files import SourceSettingError

# The raw contract: the table, its key, the column the source bumps on every write.
APP_TABLES: dict[str, str] = {"users": "user_id", "transactions": "transaction_id"}
CURSOR_COLUMN = "updated_at"
BACKENDS = ("auto", "connectorx", "pyarrow")
# the databases ConnectorX reads (SQLAlchemy dialect names)
CONNECTORX_DIALECTS = frozenset({"sqlite", "postgresql", "mysql", "mssql"})
CONNECT_TIMEOUT_SECONDS = 10


def parse_url(credentials: str | ConnectionStringCredentials) -> sa.engine.URL:
    """The SQLAlchemy URL of the credentials (a SQLite file made absolute); SourceSettingError if it does not parse."""
    if isinstance(credentials, ConnectionStringCredentials):
        credentials = credentials.to_native_representation()
    try:
        url = sa.engine.make_url(str(credentials))
    except sa.exc.ArgumentError as error:
        raise SourceSettingError("sources.app_database.credentials", "is not a SQLAlchemy URL") from error
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # ConnectorX and SQLAlchemy read relative SQLite paths differently: hand both an absolute one
        path = Path(url.database).resolve()
        if not path.is_file():  # SQLite would quietly create an empty database there
            raise SourceSettingError(
                "sources.app_database.credentials", f"names a SQLite file that does not exist: {path}"
            )
        url = url.set(database=str(path))
    return with_installed_driver(url)


def with_installed_driver(url: sa.engine.URL) -> sa.engine.URL:
    """A plain `postgresql://` URL through psycopg2 when psycopg (SQLAlchemy 2.1's default) is not installed."""
    if url.drivername == "postgresql" and not importlib.util.find_spec("psycopg"):
        if importlib.util.find_spec("psycopg2"):
            return url.set(drivername="postgresql+psycopg2")
    return url


def choose_backend(backend: str, url: sa.engine.URL) -> str:
    """`auto` means ConnectorX where it can read the database, dlt's pyarrow backend elsewhere."""
    if backend != "auto":
        return backend
    readable = url.get_backend_name() in CONNECTORX_DIALECTS
    return "connectorx" if readable and importlib.util.find_spec("connectorx") else "pyarrow"


def engine_options(url: sa.engine.URL) -> dict[str, Any]:
    """Connect with a timeout, so an unreachable server fails in seconds rather than hanging."""
    if url.get_backend_name() in ("postgresql", "mysql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}}
    return {}


def add_row_ids(table: pa.Table) -> pa.Table:
    """Give every row of a database chunk a `_dlt_id` (the chunk's random prefix + row number)."""
    return with_row_ids(table, random_prefix())


def app_table(url: sa.engine.URL, table: str, schema: str | None, backend: str, chunk_size: int) -> DltResource:
    """One incremental, merged table of the app database."""
    streaming = {"return_type": "arrow_stream", "batch_size": chunk_size} if backend == "connectorx" else None
    resource = sql_table(
        credentials=url.render_as_string(hide_password=False),
        table=table,
        schema=schema,
        backend=backend,
        backend_kwargs=streaming,
        chunk_size=chunk_size,
        reflection_level="full",
        engine_kwargs=engine_options(url),
        incremental=dlt.sources.incremental(CURSOR_COLUMN),
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key=APP_TABLES[table],
    ).with_name(table)
    # two versions of one key in a single run: keep the latest
    resource.apply_hints(columns={CURSOR_COLUMN: {"name": CURSOR_COLUMN, "dedup_sort": "desc"}})
    return resource.add_map(add_row_ids)


@dlt.source(name="app")
def app_database(
    credentials: str | ConnectionStringCredentials = dlt.secrets.value,
    schema: str | None = None,
    tables: Sequence[str] = tuple(APP_TABLES),
    backend: str = "auto",
    chunk_size: int = 100_000,
) -> list[DltResource]:
    """Incremental, merged resources for the app database tables in `tables`.

    Args:
        credentials: a SQLAlchemy URL, e.g. `sqlite:////abs/path/app.sqlite` or
            `postgresql://user:password@host:5432/app`.
        schema: the database schema holding the tables (PostgreSQL), if not the default.
        tables: which of the contract's tables to load.
        backend: `auto` (ConnectorX where it reads the database, else `pyarrow`), `connectorx` or
            `pyarrow` (SQLAlchemy's cursor, for any database SQLAlchemy reaches).
        chunk_size: rows per Arrow batch read from the database.
    """
    if backend not in BACKENDS:
        raise SourceSettingError("sources.app_database.backend", f"= {backend!r}: use one of {', '.join(BACKENDS)}")
    unknown = sorted(set(tables) - set(APP_TABLES))
    if unknown:
        raise SourceSettingError("sources.app_database.tables", f"names unknown tables {unknown}")
    url = parse_url(credentials)
    chosen = choose_backend(backend, url)
    return [app_table(url, table, schema, chosen, chunk_size) for table in tables]
