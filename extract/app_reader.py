"""How an app table's rows are read: dlt's table loaders, a window on `updated_at`, a fallback for
values ConnectorX cannot convert.

ConnectorX reads a column by its declared type and panics (a Rust panic, ~250 lines of traceback)
on a value that does not fit it, which SQLite allows: text in an INTEGER column, a BLOB amount,
invalid UTF-8 in a TEXT column. On such a panic the rest of a SQLite table is read through
Python's own `sqlite3` driver from the row where ConnectorX stopped (the query orders by rowid, so
both readers see the same order): a value that fits its column keeps its type, one that does not
is kept as text, in its column when that is a text column and in `<column>__v_text` (dlt's name
for a variant column) otherwise; invalid UTF-8 is kept with its bytes escaped (`\\xe9`); a BLOB
reads `X'0102'`. Staging casts the text safely and quarantines what it cannot read.
"""

import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from dlt.common.libs.pyarrow import PyToArrowConversionException
from dlt.sources.sql_database.helpers import ConnectorXTableLoader, TableLoader

from extract.app_window import CURSOR_COLUMN, ReadWindow
from extract.arrow_rows import ROW_ID_COLUMN, random_prefix
from extract.files import SourceSettingError

VARIANT_SUFFIX = "__v_text"
ROW_NUMBER_DIGITS = 12
# "cx writer failed: Source(SQLiteError(InvalidColumnType(0, "id", Text)))"
WRONG_TYPE = re.compile(r'InvalidColumnType\((\d+), "([^"]*)", (\w+)\)')
# "... FromSqlConversionFailure(1, Text, Utf8Error { valid_up_to: 2, error_len: None }) ..."
NOT_CONVERTED = re.compile(r"FromSqlConversionFailure\((\d+), (\w+), (\w+)")
# "(sqlite3.OperationalError) Could not decode to UTF-8 column 'name' with text 'Jo\ufffd'"
UNDECODABLE = re.compile(r"Could not decode to UTF-8 column '([^']*)'")
# "Conversion to arrow failed for field `user_id` with dlt hint ... (Could not convert 'abc' with type str: ...)"
NOT_ARROW = re.compile(r"for field `([^`]*)`.*\((Could not convert [^:]*)")


@dataclass(frozen=True)
class WindowSettings:
    """The table's key and the cursor's limits (`sources.app_database` settings)."""

    key: str
    max_clock_skew_seconds: float
    lookback_seconds: float


def with_row_ids(table: pa.Table, prefix: str, first: int) -> pa.Table:
    """`table` with `_dlt_id` = prefix + zero-padded row number from `first`: within one load, row
    ids sort in read order (staging keeps the first of two versions of a key with the same
    `updated_at`)."""
    numbers = pc.cast(pa.array(np.arange(first, first + table.num_rows, dtype=np.int64)), pa.string())
    padded = pc.utf8_lpad(numbers, width=ROW_NUMBER_DIGITS, padding="0")
    ids = pc.binary_join_element_wise(prefix, padded, "")
    return table.append_column(pa.field(ROW_ID_COLUMN, pa.string(), nullable=False), ids)


def unreadable_value(error: BaseException) -> bool:
    """A value the reader could not convert: a ConnectorX panic, dlt's pyarrow backend failing to
    build an Arrow column, SQLite's driver failing to decode text."""
    if isinstance(error, sa.exc.OperationalError):
        return "Could not decode" in str(error)
    return is_panic(error) or isinstance(error, PyToArrowConversionException | pa.ArrowInvalid | pa.ArrowTypeError)


def declared_arrow_type(declared: sa.types.TypeEngine) -> pa.DataType | None:
    """The Arrow type ConnectorX gives a SQLite column of this declared type (None: not known)."""
    if isinstance(declared, sa.Integer):
        return pa.int64()
    if isinstance(declared, sa.Float | sa.Numeric):
        return pa.float64()
    if isinstance(declared, sa.String):
        return pa.string()
    if isinstance(declared, sa.LargeBinary):
        return pa.binary()
    return None


def error_reason(error: BaseException, names: list[str]) -> tuple[str, str]:
    """(column, what was wrong) from the reader's error ('' when it names no column); `names`: the
    query's columns."""
    message = str(error)
    if found := UNDECODABLE.search(message):
        return found.group(1), "invalid UTF-8"
    if found := NOT_ARROW.search(message):
        return found.group(1), found.group(2)
    if found := WRONG_TYPE.search(message):
        return found.group(2), f"a {found.group(3)} value"
    if found := NOT_CONVERTED.search(message):
        index = int(found.group(1))
        name = names[index] if index < len(names) else f"#{index}"
        reason = "invalid UTF-8" if found.group(3) == "Utf8Error" else f"a {found.group(2)} value"
        return name, reason
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return "", lines[0] if lines else type(error).__name__


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """Keep a Rust panic's message (printed by Rust to file descriptor 2) off the console: the
    panic is turned into one line of the extract's output instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def is_panic(error: BaseException) -> bool:
    """A Rust panic surfaced by pyo3 (`pyo3_runtime.PanicException`, a BaseException)."""
    return type(error).__name__ == "PanicException"


def as_text(value: Any) -> str:
    """A value as text: a BLOB as SQLite writes its literal, anything else as Python prints it."""
    return f"X'{value.hex().upper()}'" if isinstance(value, bytes) else str(value)


def fits(data_type: pa.DataType) -> Callable[[Any], bool]:
    """Whether a Python value from the driver can be stored in an Arrow column of `data_type`."""
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return lambda value: isinstance(value, str)
    if pa.types.is_integer(data_type):
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if pa.types.is_floating(data_type):
        return lambda value: isinstance(value, int | float) and not isinstance(value, bool)
    if pa.types.is_binary(data_type):
        return lambda value: isinstance(value, bytes)
    return lambda value: True


def lenient_columns(name: str, values: list[Any], data_type: pa.DataType | None) -> tuple[dict[str, pa.Array], int]:
    """Arrow columns for one column's values, and how many did not fit its type (kept as text)."""
    if data_type is None:
        try:
            return {name: pa.array(values)}, 0
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            data_type = pa.string()
    check = fits(data_type)
    wrong = [value is not None and not check(value) for value in values]
    count = sum(wrong)
    if not count:
        try:
            return {name: pa.array(values, data_type)}, 0
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            wrong = [value is not None for value in values]
            count = sum(wrong)
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        text = [as_text(value) if bad else value for value, bad in zip(values, wrong, strict=True)]
        return {name: pa.array(text, data_type)}, count
    kept = [None if bad else value for value, bad in zip(values, wrong, strict=True)]
    variant = [as_text(value) if bad else None for value, bad in zip(values, wrong, strict=True)]
    return {name: pa.array(kept, data_type), name + VARIANT_SUFFIX: pa.array(variant, pa.string())}, count


def read_sqlite_leniently(
    database: str,
    sql: str,
    skip: int,
    chunk_size: int,
    types: dict[str, pa.DataType | None],
    counts: dict[str, int],
) -> Iterator[pa.Table]:
    """The rows of `sql` after the first `skip`, through Python's sqlite3, values kept as in
    `lenient_columns`; `counts` gathers the values kept as text per column."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)

    def decode(raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            counts["invalid UTF-8"] = counts.get("invalid UTF-8", 0) + 1
            return raw.decode("utf-8", "backslashreplace")

    connection.text_factory = decode
    try:
        cursor = connection.execute(sql)
        names = [description[0] for description in cursor.description]
        while skip > 0:
            skipped = len(cursor.fetchmany(min(skip, chunk_size)))
            if not skipped:
                return
            skip -= skipped
        while rows := cursor.fetchmany(chunk_size):
            columns: dict[str, pa.Array] = {}
            for name, values in zip(names, zip(*rows, strict=True), strict=True):
                built, wrong = lenient_columns(name, list(values), types.get(name))
                columns.update(built)
                if wrong:
                    counts[name] = counts.get(name, 0) + wrong
            yield pa.table(columns)
    finally:
        connection.close()


class AppTableLoader(ConnectorXTableLoader, TableLoader):
    """dlt's table loader (ConnectorX or the pyarrow backend) reading the table's window.

    `settings` is set on a subclass per table (`loader_for`): dlt constructs the loader itself.
    """

    settings: WindowSettings

    def column_name(self, name: str) -> str:
        """The table's own spelling of a contract column (names compare case-insensitively)."""
        return next(column.name for column in self.table.columns if column.name.lower() == name)

    def window_query(self, start: str | None) -> sa.Select:
        """The rows from `start` on, those without `updated_at`; on SQLite in rowid order."""
        query = self.table.select()
        if start is not None:
            cursor = self.table.c[self.column_name(CURSOR_COLUMN)]
            query = query.where(sa.or_(cursor >= start, cursor.is_(None)))
        if self.engine.dialect.name == "sqlite":
            keys = [column for column in self.table.primary_key.columns]
            query = query.order_by(*keys) if keys else query.order_by(sa.literal_column("rowid"))
        return query

    def forget_stored_primary_key(self) -> None:
        """An earlier version of this source merged on a primary key; dlt keeps that hint in the
        stored schema (a hint that is merely absent does not remove it), so it is removed here."""
        stored = dlt.current.source_schema().tables.get(self.table.name)
        for column in stored["columns"].values() if stored else []:
            column.pop("primary_key", None)
            column.pop("dedup_sort", None)

    def load_rows(self, backend_kwargs: dict[str, Any] | None = None) -> Iterator[pa.Table]:
        self.forget_stored_primary_key()
        window = ReadWindow(
            self.table.name,
            self.column_name(self.settings.key),
            dlt.current.resource_state(),
            self.settings.max_clock_skew_seconds,
            self.settings.lookback_seconds,
            cursor_column=self.column_name(CURSOR_COLUMN),
        )
        self.notes: list[str] = []
        prefix, count = random_prefix(), 0
        for batch in self.read(self.window_query(window.start), dict(backend_kwargs or {})):
            kept = window.split(batch)
            if kept is not None:
                yield with_row_ids(kept, prefix, count)
                count += kept.num_rows
        for held in window.finish():
            yield with_row_ids(held, prefix, count)
            count += held.num_rows
        dlt.current.resource_metrics()["notes"] = window.report.notes() + self.notes

    def read(self, query: sa.Select, backend_kwargs: dict[str, Any]) -> Iterator[pa.Table]:
        """Arrow tables of the query's rows; a value the backend cannot convert falls back as the
        module says (ConnectorX panics; dlt's pyarrow backend raises ArrowInvalid or a decode error)."""
        connectorx = self.backend == "connectorx"
        stream = iter(
            self._load_rows_connectorx(query, backend_kwargs) if connectorx else self._load_rows(query, backend_kwargs)
        )
        read, schema = 0, None
        while True:
            try:
                with stderr_silenced() if connectorx else nullcontext():
                    batch = next(stream)
            except StopIteration:
                return
            except BaseException as error:
                if not unreadable_value(error):
                    raise
                yield from self.read_after_error(query, read, schema, error)
                return
            read, schema = read + batch.num_rows, batch.schema
            yield batch

    def read_after_error(
        self, query: sa.Select, read: int, schema: pa.Schema | None, error: BaseException
    ) -> Iterator[pa.Table]:
        column, reason = error_reason(error, [column.name for column in self.table.columns])
        reader = "ConnectorX" if self.backend == "connectorx" else "SQLAlchemy"
        where = f"{self.table.name}{'.' + column if column else ''} ({reason})"
        if self.engine.dialect.name != "sqlite":
            if read or not is_panic(error):
                advice = ": set it to 'pyarrow'" if read and is_panic(error) else ""
                raise SourceSettingError(
                    "sources.app_database.backend", f"= '{self.backend}': {reader} cannot read {where}{advice}"
                ) from None
            self.notes.append(f"{self.table.name}: ConnectorX cannot read {where}: read through SQLAlchemy")
            self.backend = "pyarrow"
            yield from self._load_rows(query, {})
            return
        types = {field.name: field.type for field in schema} if schema is not None else self.declared_types()
        counts: dict[str, int] = {}
        yield from read_sqlite_leniently(
            str(self.engine.url.database), self.compile_query(query), read, self.chunk_size, types, counts
        )
        kept = ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items())) or "none"
        self.notes.append(
            f"{self.table.name}: {reader} cannot read {where}; from row {read:,} on read through sqlite3, "
            f"values that do not fit their column's type kept as text ({kept}; "
            f"non-text columns: <column>{VARIANT_SUFFIX})"
        )

    def declared_types(self) -> dict[str, pa.DataType | None]:
        """The Arrow type of each column from its declared SQLite type, as ConnectorX reads it (None:
        inferred from the values)."""
        return {column.name: declared_arrow_type(column.type) for column in self.table.columns}


def loader_for(settings: WindowSettings) -> type[AppTableLoader]:
    """A loader class for one table (dlt constructs the loader from the class)."""
    return type("AppTableLoader", (AppTableLoader,), {"settings": settings})
