"""Event stream source: clickstream micro-batches landed as Parquet files.

A stream delivers at least once, so the same event can arrive twice, in one batch or in a
later one. Each run reads only the batch files that landed since the last run (incremental on
the file's modification date) and merges on `event_id`, so a re-delivered event is stored once.
"""

import dlt
import pyarrow.parquet as pq
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItemDict, filesystem


@dlt.transformer(name="events", primary_key="event_id", write_disposition="merge")
def read_event_batches(files: list[FileItemDict]):
    """Yield each micro-batch file as one Arrow table, tagged with the file it came from."""
    for file in files:
        with file.open() as handle:
            batch = pq.read_table(handle)
        yield batch.append_column("_batch_file", [[file["relative_path"]] * batch.num_rows])


@dlt.source(name="events")
def event_stream(bucket_url: str = dlt.config.value, file_glob: str = "**/*.parquet") -> DltResource:
    """New micro-batch files under `bucket_url` (file://, s3://, gs://), merged on `event_id`."""
    batches = filesystem(
        bucket_url=bucket_url,
        file_glob=file_glob,
        incremental=dlt.sources.incremental("modification_date", row_order="asc"),
    )
    return batches | read_event_batches
