"""Bucket files source: chargebacks (the fraud labels) as CSV, JSONL or Parquet files.

Labels arrive weeks after the transaction, in files dropped into a bucket (`file://` by
default, `s3://` or `gs://` through fsspec). A run reads only files that are new or changed
since the last run (incremental on the file's modification date). A changed file replaces the
rows it gave before: the raw table is merged on `_source_file` (the file's path) with
(`_source_file`, `_source_row`) as the key, so a file that grew never leaves duplicates behind,
while the repeated reports a file itself holds are kept.

Every format is read into the same all-text Arrow schema: the raw layer keeps values exactly as
the file gave them and staging casts them. A file that cannot be read so (empty, corrupt, a row
with the wrong number of fields, a missing contract column, invalid UTF-8, a JSONL value changing
type, an unknown extension) is not loaded: `raw_chargebacks.rejected_files` gets its path, the
reason, its size and modification date, and the other files load. Rows an earlier version of a
rejected file gave stay until a readable version replaces them.
"""

import io
from collections.abc import Iterator

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from dlt.extract.items import DataItemWithMeta
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem

from extract.arrow_rows import chunked, constant, read_concurrently, stable_prefix, with_row_ids
from extract.files import RejectedFile, rejected_files_rows, rejection, require_bucket

CHARGEBACK_COLUMNS = ("transaction_id", "reported_at", "reason")
RAW_SCHEMA = pa.schema([(name, pa.string()) for name in CHARGEBACK_COLUMNS])
SOURCE_FILE_COLUMN = "_source_file"
SOURCE_ROW_COLUMN = "_source_row"


class UnsupportedFileError(ValueError):
    """A file in the bucket is not CSV, JSONL or Parquet, or lacks the contract's columns."""


def read_chargeback_file(name: str, content: bytes) -> pa.Table:
    """Parse one file by its extension into the raw all-text schema."""
    if name.endswith(".csv"):
        options = pa_csv.ConvertOptions(column_types=RAW_SCHEMA, include_columns=list(CHARGEBACK_COLUMNS))
        table = pa_csv.read_csv(io.BytesIO(content), convert_options=options)
    elif name.endswith((".jsonl", ".json")):
        table = pa_json.read_json(io.BytesIO(content))
    elif name.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(content))
    else:
        raise UnsupportedFileError(f"cannot read {name!r}: expected .csv, .jsonl or .parquet")
    missing = [column for column in CHARGEBACK_COLUMNS if column not in table.column_names]
    if missing:
        raise UnsupportedFileError(f"{name!r} lacks the contract's columns {missing}")
    return pa.table({name: table[name].cast(pa.string()) for name in CHARGEBACK_COLUMNS})


def read_tagged(file: FileItemDict) -> pa.Table | RejectedFile:
    """One file as raw rows tagged with the file's path, the row's position in it and a stable row id;
    a RejectedFile when its content cannot be read as the contract says."""
    path = file["relative_path"]
    content = file.read_bytes()  # a bucket that cannot be read fails the load: that is not the file's fault
    try:
        table = read_chargeback_file(file["file_name"], content)
    except (ValueError, OSError, pa.ArrowException) as error:  # parsing bytes in memory: the content is bad
        return rejection(path, error)
    table = table.append_column(SOURCE_FILE_COLUMN, constant(path, table.num_rows))
    table = table.append_column(SOURCE_ROW_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    return with_row_ids(table, stable_prefix(path))


@dlt.transformer(
    name="chargebacks",
    primary_key=(SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN),
    merge_key=SOURCE_FILE_COLUMN,
    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
)
def read_chargeback_files(files: list[FileItemDict]) -> Iterator[pa.Table | DataItemWithMeta]:
    """Yield the chargeback files of one listing page as Arrow tables, then the page's rejected files."""
    rejected: list[RejectedFile] = []

    def readable() -> Iterator[pa.Table]:
        for outcome in read_concurrently(files, read_tagged):
            if isinstance(outcome, RejectedFile):
                rejected.append(outcome)
            else:
                yield outcome

    yield from chunked(readable())
    yield rejected_files_rows(files, rejected)


@dlt.source(name="chargebacks")
def bucket_files(bucket_url: str = dlt.config.value, file_glob: str = "**/*") -> DltResource:
    """Chargeback files under `bucket_url` (a folder, file://, s3://, gs://) that are new or changed."""
    require_bucket("sources.bucket_files.bucket_url", bucket_url)
    files = filesystem(
        bucket_url=bucket_url,
        file_glob=file_glob,
        incremental=dlt.sources.incremental("modification_date", row_order="asc"),
    )
    return files | read_chargeback_files
