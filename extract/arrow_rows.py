"""Arrow helpers the sources share: lineage columns, row ids, concurrent file reads, chunking.

Every source hands dlt Arrow tables (never Python dicts row by row). dlt's normalizer can add a
random `_dlt_id` to Arrow tables itself, but it builds those ids one Python string at a time and
must then rewrite every Parquet file; the sources add `_dlt_id` here instead, vectorised, so
dlt imports the extracted Parquet files as they are (`add_dlt_id = false` in `.dlt/config.toml`).
"""

import hashlib
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROW_ID_COLUMN = "_dlt_id"
# Arrow tables handed to dlt hold at least this many rows (unless the input runs out): fewer,
# larger items keep dlt's per-item overhead and the Parquet row-group count low.
MIN_CHUNK_ROWS = 250_000
READ_WORKERS = 4

Item = TypeVar("Item")


def stable_prefix(key: str) -> str:
    """A 16-hex-digit prefix derived from `key` (e.g. a file's path): the same key, the same ids."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest() + "."


def random_prefix() -> str:
    """A random 16-hex-digit prefix for rows that have no stable identity (a database chunk)."""
    return secrets.token_hex(8) + "."


def row_ids(prefix: str, count: int) -> pa.Array:
    """`prefix` followed by 0 .. count-1: unique ids as long as prefixes are unique."""
    numbers = pc.cast(pa.array(np.arange(count, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, numbers, "")


def constant(value: str, count: int) -> pa.Array:
    """A string column holding `value` `count` times."""
    return pa.repeat(pa.scalar(value, pa.string()), count)


def with_row_ids(table: pa.Table, prefix: str) -> pa.Table:
    """`table` with a `_dlt_id` column (replacing one the table already has)."""
    if ROW_ID_COLUMN in table.column_names:
        table = table.drop_columns([ROW_ID_COLUMN])
    return table.append_column(pa.field(ROW_ID_COLUMN, pa.string(), nullable=False), row_ids(prefix, table.num_rows))


def read_concurrently(
    items: Sequence[Item], read: Callable[[Item], pa.Table], workers: int = READ_WORKERS
) -> Iterator[pa.Table]:
    """`read(item)` for every item, in order, a few at a time in threads (Arrow readers release the GIL).

    At most `2 * workers` items are read ahead of the consumer, so memory stays bounded however
    large the files are.
    """
    if len(items) <= 1:
        yield from (read(item) for item in items)
        return
    window = 2 * workers
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="extract-read") as pool:
        for start in range(0, len(items), window):
            yield from pool.map(read, items[start : start + window])


def chunked(tables: Iterable[pa.Table], min_rows: int = MIN_CHUNK_ROWS) -> Iterator[pa.Table]:
    """Concatenate consecutive tables of the same schema into tables of at least `min_rows` rows.

    A table with a different schema (a column appeared: schema evolution) starts a new chunk, so
    dlt sees each shape as it is and evolves the raw table. Each chunk is one contiguous Arrow
    table: Parquet writes it in a fraction of the time a table of many small pieces takes.
    """
    pending: list[pa.Table] = []
    rows = 0
    for table in tables:
        if pending and table.schema != pending[0].schema:
            yield pa.concat_tables(pending).combine_chunks()
            pending, rows = [], 0
        pending.append(table)
        rows += table.num_rows
        if rows >= min_rows:
            yield pa.concat_tables(pending).combine_chunks()
            pending, rows = [], 0
    if pending:
        yield pa.concat_tables(pending).combine_chunks()
