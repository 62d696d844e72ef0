"""Bucket files source: chargebacks (the fraud labels) as CSV, JSONL or Parquet files.

Labels arrive weeks after the transaction, in files dropped into a bucket (`file://` by
default, `s3://` or `gs://` through fsspec). A run reads only files that are new or changed
since the last run. Every format is read into the same all-text Arrow schema: the raw layer keeps
values exactly as the file gave them and staging casts them.
"""

import io

import dlt
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem

CHARGEBACK_COLUMNS = ("transaction_id", "reported_at", "reason")
RAW_SCHEMA = pa.schema([(name, pa.string()) for name in CHARGEBACK_COLUMNS])


class UnsupportedFileError(ValueError):
    """A file in the bucket is not CSV, JSONL or Parquet."""


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
        raise UnsupportedFileError(f"chargebacks: cannot read {name!r}: expected .csv, .jsonl or .parquet")
    missing = [column for column in CHARGEBACK_COLUMNS if column not in table.column_names]
    if missing:
        raise UnsupportedFileError(f"chargebacks: {name!r} lacks the contract's columns {missing}")
    return pa.table({name: table[name].cast(pa.string()) for name in CHARGEBACK_COLUMNS})


@dlt.transformer(name="chargebacks", write_disposition="append")
def read_chargeback_files(files: list[FileItemDict]):
    """Yield each chargeback file as an Arrow table, tagged with the file it came from."""
    for file in files:
        table = read_chargeback_file(file["file_name"], file.read_bytes())
        yield table.append_column("_source_file", pa.array([file["relative_path"]] * table.num_rows))


@dlt.source(name="chargebacks")
def bucket_files(bucket_url: str = dlt.config.value, file_glob: str = "**/*") -> DltResource:
    """Chargeback files under `bucket_url` that are new or changed since the last run."""
    files = filesystem(
        bucket_url=bucket_url,
        file_glob=file_glob,
        incremental=dlt.sources.incremental("modification_date", row_order="asc"),
    )
    return files | read_chargeback_files
