"""App database source: `users` and `transactions` from any SQLAlchemy URL.

Both tables change after insert, so they are read incrementally on `updated_at` and merged on
their keys: an updated row replaces the older version in the raw table and never duplicates it.
Rows travel as Arrow tables (the `pyarrow` backend), not as Python dicts.
"""

from collections.abc import Sequence

import dlt
from dlt.sources import DltResource
from dlt.sources.sql_database import sql_table

# The raw contract: the table, its key, the column the source bumps on every write.
APP_TABLES: dict[str, str] = {"users": "user_id", "transactions": "transaction_id"}
CURSOR_COLUMN = "updated_at"


@dlt.source(name="app")
def app_database(
    credentials: str = dlt.secrets.value,
    schema: str | None = None,
    tables: Sequence[str] = tuple(APP_TABLES),
    chunk_size: int = 100_000,
) -> list[DltResource]:
    """Incremental, merged resources for the app database tables in `tables`.

    Args:
        credentials: a SQLAlchemy URL, e.g. `sqlite:///data/demo/app.sqlite` or
            `postgresql://user:password@host:5432/app`.
        schema: the database schema holding the tables (PostgreSQL), if not the default.
        tables: which of the contract's tables to load.
        chunk_size: rows per Arrow batch read from the database.
    """
    return [
        sql_table(
            credentials=credentials,
            table=table,
            schema=schema,
            backend="pyarrow",
            chunk_size=chunk_size,
            reflection_level="full",
            incremental=dlt.sources.incremental(CURSOR_COLUMN, row_order="asc"),
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            primary_key=APP_TABLES[table],
        ).with_name(table)
        for table in tables
    ]
