"""App database source: `users` and `transactions` from any SQLAlchemy URL.

Both tables change after insert, so they are read incrementally on `updated_at` and merged on
their keys (dlt's delete-insert on a merge key): a key read again replaces all of its older raw
rows. Every row read reaches raw, as the source gave it: two versions of a key read in one run
(even with the same `updated_at`), exact duplicates and rows without a key are all kept, and
staging decides between them (the latest `updated_at`, then the latest load, then the first read;
a row without a key is quarantined as missing_key).

The cursor is bounded by the clock and keeps a lookback (extract/app_window.py): a row dated in the
future is loaded but does not move it, a correction backdated within the lookback is read, a row
without `updated_at` is loaded, rows read again unchanged are not loaded again, and the run's
output says how many rows it saw ahead of the clock or without `updated_at`.

Rows travel as Arrow tables, never as Python dicts: by default through ConnectorX, which reads
SQLite, PostgreSQL, MySQL and SQL Server straight into Arrow, and through SQLAlchemy's cursor
(dlt's `pyarrow` backend) for any other database; on SQLite a value either cannot convert is read
by a fallback and kept as text (extract/app_reader.py). Column types come from the database's own
schema, never from the values: a text column stays text when a non-numeric value turns up in it.
A table must have the raw contract's columns (CONTRACT_COLUMNS); a missing one fails the source.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dlt
import sqlalchemy as sa
from dlt.sources import DltResource
from dlt.sources.credentials import ConnectionStringCredentials
from dlt.sources.sql_database import sql_table

from extract.app_reader import WindowSettings, loader_for
from extract.app_window import CURSOR_COLUMN
from extract.files import SourceSettingError

# The raw contract: the table, its key (the column the source bumps on every write is CURSOR_COLUMN).
APP_TABLES: dict[str, str] = {"users": "user_id", "transactions": "transaction_id"}
# the columns each table must have (users.loyalty_tier is optional: it appears part-way)
CONTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "name", "email", "age", "country", "signup_at", "updated_at"),
    "transactions": (
        "transaction_id",
        "user_id",
        "amount",
        "currency",
        "status",
        "device_type",
        "created_at",
        "updated_at",
    ),
}
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


def require_contract_columns(table: sa.Table) -> None:
    """SourceSettingError naming the table and the contract columns it lacks (names compare
    case-insensitively); extra columns are loaded as they are."""
    present = {column.name.lower() for column in table.columns}
    missing = [name for name in CONTRACT_COLUMNS[table.name] if name not in present]
    if missing:
        raise SourceSettingError(
            "sources.app_database.credentials",
            f"names a database whose table {table.name} lacks the raw contract's column(s) {', '.join(missing)} "
            f"(the contract: {table.name}({', '.join(CONTRACT_COLUMNS[table.name])}))",
        )
    [cursor] = [column for column in table.columns if column.name.lower() == CURSOR_COLUMN]
    if isinstance(cursor.type, sa.Integer | sa.Numeric):  # the window compares timestamps (or ISO text)
        raise SourceSettingError(
            "sources.app_database.credentials",
            f"names a database whose {table.name}.{cursor.name} is a number ({cursor.type}): the raw contract's "
            f"{CURSOR_COLUMN} is a timestamp, or text in ISO format",
        )


def app_table(
    url: sa.engine.URL, table: str, schema: str | None, backend: str, chunk_size: int, settings: WindowSettings
) -> DltResource:
    """One table of the app database, read in its window and merged on its key."""
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
        table_adapter_callback=require_contract_columns,
        table_loader_class=loader_for(settings),
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        merge_key=settings.key,
    ).with_name(table)
    # no primary key (not even one the database declares, or one an earlier version of this source
    # stored in the schema: AppTableLoader removes it): dlt would deduplicate a load on it, dropping
    # every row without a key but one and every version of a key but one, and delete on either key
    resource.apply_hints(primary_key=[])
    return resource


@dlt.source(name="app")
def app_database(
    credentials: str | ConnectionStringCredentials = dlt.secrets.value,
    schema: str | None = None,
    tables: Sequence[str] = tuple(APP_TABLES),
    backend: str = "auto",
    chunk_size: int = 100_000,
    max_clock_skew_seconds: float = 300,
    lookback_seconds: float = 3600,
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
        max_clock_skew_seconds: a row dated more than this after now is loaded but does not move
            the cursor (it is read again, and reported, on every run until its time has come).
        lookback_seconds: each run reads again the rows dated up to this long before the cursor,
            so a correction backdated by less than this still loads.
    """
    if backend not in BACKENDS:
        raise SourceSettingError("sources.app_database.backend", f"= {backend!r}: use one of {', '.join(BACKENDS)}")
    unknown = sorted(set(tables) - set(APP_TABLES))
    if unknown:
        raise SourceSettingError("sources.app_database.tables", f"names unknown tables {unknown}")
    url = parse_url(credentials)
    chosen = choose_backend(backend, url)
    return [
        app_table(
            url,
            table,
            schema,
            chosen,
            chunk_size,
            WindowSettings(APP_TABLES[table], max_clock_skew_seconds, lookback_seconds),
        )
        for table in tables
    ]
