"""Event stream source: clickstream micro-batches landed as Parquet files.

A stream delivers at least once, so the same event can arrive twice, in one batch or in a
later one. Each run reads only the batch files that landed since the last run (incremental on
the file's modification date) and appends every delivery to `raw_events.events`, as bronze keeps
what the source gave; staging (stg_events__events) keeps the first delivery of each `event_id`.
Appending instead of merging on `event_id` halves the load time (docs/benchmarks.md).

Files are read a few at a time in threads and handed to dlt as large Arrow tables; every row
carries the file it came from (`_batch_file`) and a row id (`_dlt_id`) made of the dlt load and
the file: a file delivered again under the same path (re-uploaded, or read again after a change of
bucket) lands in a new load with new row ids, so no two raw rows share one.
"""

from collections.abc import Iterator

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem

from extract.arrow_rows import (
    MIN_CHUNK_ROWS,
    chunked,
    constant,
    random_prefix,
    read_concurrently,
    stable_prefix,
    with_row_ids,
)
from extract.files import RejectedFile, rejected_files_rows, rejection, require_bucket

BATCH_FILE_COLUMN = "_batch_file"
FILES_PER_PAGE = 200
# the raw contract: a batch file without one of these is rejected
EVENT_COLUMNS = ("event_id", "user_id", "session_id", "event_type", "device_type", "occurred_at", "properties")


def read_batch_table(content: bytes) -> pa.Table:
    """A micro-batch file's rows; ValueError when it lacks a contract column."""
    table = pq.read_table(pa.BufferReader(content))
    missing = [column for column in EVENT_COLUMNS if column not in table.column_names]
    if missing:
        raise ValueError(f"lacks the contract's columns {missing}")
    return table


def read_batch_file(file: FileItemDict, load_id: str) -> pa.Table | RejectedFile:
    """One micro-batch as Arrow, tagged with its file and row ids unique to the file in this load;
    a RejectedFile when its content cannot be read."""
    content = file.read_bytes()  # a bucket that cannot be read fails the load: that is not the file's fault
    try:
        table = read_batch_table(content)
    except (ValueError, OSError, pa.ArrowException) as error:  # parsing bytes in memory: the content is bad
        return rejection(file["relative_path"], error)
    table = table.append_column(BATCH_FILE_COLUMN, constant(file["relative_path"], table.num_rows))
    return with_row_ids(table, stable_prefix(f"{load_id}/{file['relative_path']}"))


def current_load_id() -> str:
    """The dlt load being extracted; outside a pipeline run (the source iterated directly), a random id."""
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except CurrentLoadPackageStateNotAvailable:
        return random_prefix()


@dlt.transformer(
    name="events",
    primary_key="event_id",
    write_disposition="append",
    columns={BATCH_FILE_COLUMN: {"data_type": "text"}},
)
def read_event_batches(
    files: list[FileItemDict], chunk_rows: int = MIN_CHUNK_ROWS
) -> Iterator[pa.Table | DataItemWithMeta]:
    """Yield the micro-batch files of one listing page as Arrow tables of at least `chunk_rows` rows,
    then the page's rejected files."""
    load_id = current_load_id()  # read here: the reader threads have no dlt context
    rejected: list[RejectedFile] = []

    def readable() -> Iterator[pa.Table]:
        for outcome in read_concurrently(files, lambda file: read_batch_file(file, load_id)):
            if isinstance(outcome, RejectedFile):
                rejected.append(outcome)
            else:
                yield outcome

    yield from chunked(readable(), chunk_rows)
    yield rejected_files_rows(files, rejected)


@dlt.source(name="events")
def event_stream(
    bucket_url: str = dlt.config.value, file_glob: str = "**/*.parquet", chunk_rows: int = MIN_CHUNK_ROWS
) -> DltResource:
    """New micro-batch files under `bucket_url` (a folder, file://, s3://, gs://), every delivery appended.

    Args:
        bucket_url: where the micro-batch files land.
        file_glob: which files under it are batches.
        chunk_rows: rows per Arrow table handed to dlt (files are concatenated up to this size).
    """
    require_bucket("sources.event_stream.bucket_url", bucket_url)
    batches = filesystem(
        bucket_url=bucket_url,
        file_glob=file_glob,
        files_per_page=FILES_PER_PAGE,
        incremental=dlt.sources.incremental("modification_date", row_order="asc"),
    )
    return batches | read_event_batches(chunk_rows=chunk_rows)
