"""dlt's DuckDB destination, with load jobs that can run twice without storing their rows twice.

dlt runs a load job as: move its file to `started_jobs`, INSERT the file (committed), write a
marker that it committed, move it to `completed_jobs`. A process killed between the commit and the
marker leaves the job in `started_jobs`; the next run resumes the package and runs the job again
(`create_load_job(..., restore=True)`), appending the same rows, with the same `_dlt_id`s, a second
time (58k duplicate events seen after one kill; dlt-hub/dlt#3767 added the marker and says "some
kind of gap will always exist"). Here a resumed job deletes the rows of its own
file (its load's `_dlt_load_id` and the file's `_dlt_id`s) and inserts the file again, in one
transaction: whether or not the killed attempt committed, the table holds the file's rows once.
That covers every table a job writes: appended raw tables, the staging copies merges read
(`raw_<source>_staging`), and dlt's `_dlt_pipeline_state`. A merge job (`.sql`: delete the keys it
brings, insert them) runs in one transaction and gives the same rows when run again.

Recording a finished load is made idempotent too: a kill after the `_dlt_loads` row is written but
before dlt archives the package made the next run record the load a second time.

Rows are told apart by `_dlt_id`, which every table here has (the sources set it on Arrow rows,
extract/arrow_rows.py; dlt's normalizer sets it on dict rows). This leans on dlt 1.31's job classes
(pinned in pyproject.toml); tests/python/test_fault_extract.py kills every job in this window.
"""

from dlt.common.destination.client import LoadJob, PreparedTableSchema
from dlt.destinations import duckdb
from dlt.destinations.impl.duckdb.duck import DuckDbClient, DuckDbCopyJob
from dlt.destinations.insert_job_client import InsertValuesLoadJob

ROW_ID = "_dlt_id"
LOAD_ID = "_dlt_load_id"
RESUMED_ROWS = "_ml_features_resumed_rows"


def own_rows(table: PreparedTableSchema, load_id: str, row_ids: str) -> str | None:
    """A WHERE condition for the rows a job's file put in `table` (`row_ids`: a query of the file's
    `_dlt_id`s), or None when the table has no row id to tell them by."""
    columns = table.get("columns", {})
    if ROW_ID not in columns:
        return None
    condition = f"{ROW_ID} in ({row_ids})"
    return f"{LOAD_ID} = '{load_id}' and {condition}" if LOAD_ID in columns else condition


class ResumedCopyJob(DuckDbCopyJob):
    """A Parquet/JSONL file resumed after a kill: its rows are deleted and inserted again, atomically."""

    def run(self) -> None:
        client = self._job_client.sql_client
        reader = "read_parquet" if self._file_path.endswith(".parquet") else "read_json"
        condition = own_rows(self._load_table, self._load_id, f"select {ROW_ID} from {reader}('{self._file_path}')")
        with client.begin_transaction():
            if condition is not None:
                table = client.make_qualified_table_name(self.load_table_name)
                client.execute_sql(f"delete from {table} where {condition}")
            super().run()


class ResumedInsertValuesJob(InsertValuesLoadJob):
    """An INSERT ... VALUES file resumed after a kill: read into a temporary table, then the rows of
    the file are deleted from the target and inserted again, in one transaction."""

    def run(self) -> None:
        client = self._sql_client = self._job_client.sql_client
        table = client.make_qualified_table_name(self.load_table_name)
        condition = own_rows(self._load_table, self._load_id, f"select {ROW_ID} from {RESUMED_ROWS}")
        if condition is None:
            super().run()
            return
        with client.begin_transaction():
            client.execute_sql(f"create or replace temporary table {RESUMED_ROWS} as select * from {table} limit 0")
            for fragments in self._insert(RESUMED_ROWS, self._file_path):
                client.execute_fragments(fragments)
            client.execute_sql(f"delete from {table} where {condition}")
            client.execute_sql(f"insert into {table} by name select * from {RESUMED_ROWS}")
            client.execute_sql(f"drop table {RESUMED_ROWS}")


class ResumableDuckDbClient(DuckDbClient):
    """DuckDbClient whose resumed jobs replace their own rows and whose loads are recorded once."""

    def create_load_job(
        self, table: PreparedTableSchema, file_path: str, load_id: str, restore: bool = False
    ) -> LoadJob:
        job = super().create_load_job(table, file_path, load_id, restore)
        if restore and type(job) is DuckDbCopyJob:
            return ResumedCopyJob(file_path)
        if restore and type(job) is InsertValuesLoadJob:
            return ResumedInsertValuesJob(file_path)
        return job

    def complete_load(self, load_id: str) -> None:
        loads = self.sql_client.make_qualified_table_name(self.schema.loads_table_name)
        if not self.sql_client.execute_sql(f"select 1 from {loads} where load_id = %s", load_id):
            super().complete_load(load_id)


class resumable_duckdb(duckdb):  # noqa: N801 - dlt names destination factories in lower case
    """The DuckDB destination (same type, settings and state) with ResumableDuckDbClient."""

    @property
    def destination_type(self) -> str:
        return duckdb().destination_type

    @property
    def client_class(self) -> type[DuckDbClient]:
        return ResumableDuckDbClient
