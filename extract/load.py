"""Load the raw sources into the warehouse with dlt: `python -m extract [--sources ...]`.

One dlt pipeline per source, each into its own raw dataset (`raw_app`, `raw_events`, `raw_fx`,
`raw_chargebacks`). Sources are configured in `.dlt/config.toml`, `.dlt/secrets.toml` or
environment variables (see the README); while `sources.<section>.demo` is true a source reads
the bundled demo data instead, and the demo FX API is started here for the length of the load.

A load killed part-way leaves its package in the pipeline's folder; the next run finishes it
before extracting anything new (and counts its rows), and dbt's staging models read only rows of
completed loads. A job the kill interrupted after its rows were committed runs again without
storing them twice (extract/resumable_duckdb.py).
"""

import argparse
import os
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dlt
from dlt.common.destination.configuration import ParquetFormatConfiguration
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

from extract.contract import disabled_source, forget_disabled_load, is_enabled
from extract.errors import CONFIG_SECTIONS, ExtractError, explain
from extract.files import REJECTED_FILES_TABLE
from extract.resumable_duckdb import resumable_duckdb

__all__ = ["SOURCES", "ExtractError", "SourceLoad", "load_source", "main"]

SOURCES = ("app", "events", "fx", "chargebacks")
STEPS = ("extract", "normalize", "load")


@dataclass
class SourceLoad:
    """What one source's load did: rows per raw table, load ids, seconds (in total and per dlt step)."""

    source: str
    dataset: str
    rows: dict[str, int] = field(default_factory=dict)
    load_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    resumed_rows: dict[str, int] = field(default_factory=dict)
    rejected_files: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a source reported about rows it read
    disabled: bool = False  # turned off: its contract tables were loaded empty

    def describe(self) -> str:
        """One line: rows per table (those of a finished interrupted load included), seconds, rejected files."""
        if self.disabled:
            return (
                f"{self.source:<12} -> {self.dataset:<16} turned off (sources.{CONFIG_SECTIONS[self.source]}.enabled"
                f" = false): its contract tables are empty ({self.seconds:.1f} s)"
            )
        counts = ", ".join(f"{table} {count:,}" for table, count in sorted(self.rows.items())) or "no new rows"
        finished = ""
        if self.resumed:
            resumed = ", ".join(f"{table} {count:,}" for table, count in sorted(self.resumed_rows.items()))
            finished = f"; finished interrupted load {', '.join(self.resumed)}: {resumed or 'no rows'}"
        line = f"{self.source:<12} -> {self.dataset:<16} {counts} ({self.seconds:.1f} s{finished})"
        if self.rejected_files:
            first_path, first_reason = self.rejected_files[0]
            line += (
                f"; {len(self.rejected_files)} file(s) rejected, see {self.dataset}.{REJECTED_FILES_TABLE}"
                f" (first: {first_path}: {first_reason})"
            )
        if self.notes:
            line += "; " + "; ".join(self.notes)
        return line


def data_dir() -> Path:
    """Where the pipeline keeps its files: `ML_FEATURES_DATA_DIR`, default `data/`."""
    return Path(os.environ.get("ML_FEATURES_DATA_DIR", "data"))


def duckdb_path() -> str:
    """The warehouse file: `ML_FEATURES_DUCKDB_PATH`, default `<data dir>/warehouse.duckdb`."""
    return os.environ.get("ML_FEATURES_DUCKDB_PATH", str(data_dir() / "warehouse.duckdb"))


def duckdb_settings() -> dict[str, str]:
    """DuckDB settings for every connection to the warehouse (dlt, dbt, the pipeline), from the
    environment: `ML_FEATURES_DUCKDB_MEMORY_LIMIT` (e.g. `2GB`) caps the memory DuckDB uses; past
    it, DuckDB spills to a temporary folder next to the warehouse. Unset: DuckDB's default (80% of RAM).
    Under a limit, insertion order is not kept (tables have no order): dlt's merge of a large load
    runs out of memory keeping it."""
    limit = os.environ.get("ML_FEATURES_DUCKDB_MEMORY_LIMIT", "").strip()
    return {"memory_limit": limit, "preserve_insertion_order": "false"} if limit else {}


def pipelines_dir() -> Path:
    """dlt's working folder (state, pending load packages): `<data dir>/.dlt_pipelines`."""
    return data_dir() / ".dlt_pipelines"


# How the load packages' Parquet files are written for DuckDB, which reads them into the warehouse:
# row groups of DuckDB's own row-group size, and the constant `_dlt_load_id` as a plain string
# column (a dictionary-encoded one costs DuckDB noticeably more CPU to insert: docs/benchmarks.md).
DUCKDB_PARQUET = ParquetFormatConfiguration(row_group_size=122_880, supports_dictionary_encoding=False)


def emulator_credentials() -> object:
    """Anonymous credentials for a local BigQuery emulator (`BIGQUERY_EMULATOR_HOST`, which the
    google-cloud-bigquery client sends every request to), in the project `BIGQUERY_PROJECT` (default
    `ml-features-emulator`, as the `bigquery_emulator` dbt target): an emulator checks no token."""
    from dlt.common.configuration.specs.gcp_credentials import GcpDefaultCredentials, GcpServiceAccountCredentials
    from google.auth.credentials import AnonymousCredentials

    credentials = GcpServiceAccountCredentials()
    credentials.project_id = os.environ.get("BIGQUERY_PROJECT", "ml-features-emulator")
    # GcpServiceAccountCredentials.parse_native_representation takes the anonymous credentials as
    # default ones and then fails parsing them as a service-account key: only the first half applies
    GcpDefaultCredentials.parse_native_representation(credentials, AnonymousCredentials())
    return credentials


def make_destination(name: str) -> object:
    """The dlt destination for `name` (`duckdb` writes the local warehouse file)."""
    if name == "duckdb":
        path = Path(duckdb_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        credentials = DuckDbCredentials(str(path), global_config=duckdb_settings() or None)
        return resumable_duckdb(credentials, parquet_format=DUCKDB_PARQUET)
    if name == "bigquery":
        if os.environ.get("BIGQUERY_EMULATOR_HOST"):
            return dlt.destinations.bigquery(credentials=emulator_credentials())
        return dlt.destinations.bigquery()
    raise ExtractError(f"unknown destination {name!r}: use duckdb or bigquery")


# where each source's demo data is, under demo_dir()
DEMO_FILES = {"app": "app.sqlite", "events": "events", "fx": "fx_rates.parquet", "chargebacks": "bucket/chargebacks"}


def demo_dir() -> Path:
    """The demo sources written by `python -m demo.generate`: `<data dir>/demo`."""
    return data_dir() / "demo"


def uses_demo(name: str) -> bool:
    """Whether the source reads the bundled demo data (`sources.<section>.demo`, default true)."""
    value = dlt.config.get(f"sources.{CONFIG_SECTIONS[name]}.demo")
    return value is None or str(value).lower() in ("true", "1", "yes")


def require_demo_file(name: str) -> Path:
    """The absolute path of a source's demo data; ExtractError when the demo was not generated."""
    path = demo_dir() / DEMO_FILES[name]
    if not path.exists():
        raise ExtractError(f"{name}: demo data {path} is missing: run `python -m demo.generate --out {demo_dir()}`")
    return path.resolve()


@contextmanager
def source_arguments(name: str) -> Iterator[dict[str, str]]:
    """Arguments that point a source at the demo data; empty when it reads its own configuration.

    The demo FX API is a local HTTP server started for the length of the load, with a one-off token.
    """
    if not uses_demo(name):
        yield {}
    elif name == "app":
        yield {"credentials": f"sqlite:///{require_demo_file(name)}"}
    elif name in ("events", "chargebacks"):
        yield {"bucket_url": str(require_demo_file(name))}
    else:
        from demo.fx_api_server import FxApiServer

        token = secrets.token_urlsafe(16)
        rates = require_demo_file(name)
        with FxApiServer(rates, token=token) as server:
            yield {"base_url": server.start(), "token": token}


def build_source(name: str, arguments: dict[str, str]) -> dlt.sources.DltSource:
    """The dlt source object for one of SOURCES; what `arguments` does not set comes from dlt's config.

    Each source's module is imported here, when it is loaded: the CLI starts faster for one source.
    """
    if name == "app":
        from extract.app_database import app_database

        return app_database(**arguments)
    if name == "events":
        from extract.event_stream import event_stream

        return event_stream(**arguments)
    if name == "fx":
        from extract.fx_api import fx_api

        return fx_api(**arguments)
    from extract.bucket_files import bucket_files

    return bucket_files(**arguments)


def make_pipeline(name: str, destination_name: str) -> dlt.Pipeline:
    """The source's dlt pipeline, writing to the dataset `raw_<name>`."""
    return dlt.pipeline(
        pipeline_name=f"ml_features_{name}",
        destination=make_destination(destination_name),
        dataset_name=f"raw_{name}",
        pipelines_dir=str(pipelines_dir()),
    )


def step_seconds(pipeline: dlt.Pipeline, into: dict[str, float] | None = None) -> dict[str, float]:
    """Seconds dlt spent in each step of the last run (added to `into`)."""
    seconds = dict(into or {})
    trace = pipeline.last_trace
    for step in trace.steps if trace else []:
        if step.step in STEPS and step.finished_at is not None:
            seconds[step.step] = seconds.get(step.step, 0.0) + (step.finished_at - step.started_at).total_seconds()
    return seconds


def data_tables(pipeline: dlt.Pipeline) -> list[str]:
    """The source's raw tables that hold its rows (not dlt's own, not the rejected files)."""
    names = pipeline.default_schema.data_table_names(seen_data_only=True)
    return [table for table in names if table != REJECTED_FILES_TABLE]


def rows_of_loads(pipeline: dlt.Pipeline, load_ids: list[str]) -> dict[str, int]:
    """Rows each raw table holds from the loads `load_ids` (the rows a merge kept)."""
    if not load_ids:
        return {}
    ids = ", ".join(f"'{load_id}'" for load_id in load_ids)
    counts: dict[str, int] = {}
    with pipeline.sql_client() as client:
        for table in data_tables(pipeline):
            name = client.make_qualified_table_name(table)
            [(count,)] = client.execute_sql(f"select count(*) from {name} where _dlt_load_id in ({ids})")
            if count:
                counts[table] = count
    return counts


def rejected_files(pipeline: dlt.Pipeline, load_ids: list[str]) -> list[tuple[str, str]]:
    """(path, reason) of the files the loads `load_ids` rejected."""
    if not load_ids or REJECTED_FILES_TABLE not in pipeline.default_schema.tables:
        return []
    ids = ", ".join(f"'{load_id}'" for load_id in load_ids)
    with pipeline.sql_client() as client:
        name = client.make_qualified_table_name(REJECTED_FILES_TABLE)
        rows = client.execute_sql(
            f"select path, reason from {name} where _dlt_load_id in ({ids}) and reason is not null order by path"
        )
    return [(str(path), str(reason)) for path, reason in rows or []]


def drop_normalized_extracts(pipeline: dlt.Pipeline) -> None:
    """Delete the extracted copy of a package dlt's normalize already committed.

    Normalize commits a package by renaming its normalized folder into place, then deletes the
    extracted one; a kill between the two leaves both, and normalizing it again fails on the rename
    (the normalized folder is not empty). The committed copy is the whole package, so the extracted
    one is only what the kill kept dlt from deleting.
    """
    committed = set(pipeline.list_normalized_load_packages()) | set(pipeline.list_completed_load_packages())
    extracted = pipeline._get_normalize_storage().extracted_packages  # noqa: SLF001 - dlt has no public delete
    for load_id in set(pipeline.list_extracted_load_packages()) & committed:
        extracted.delete_package(load_id)


def finish_interrupted(pipeline: dlt.Pipeline) -> list[str]:
    """Load the packages a killed run left behind; return their load ids.

    dlt's `run` would load them and stop without extracting; here the caller extracts new data
    next. That `run` first restores the incremental state from the warehouse when a finished
    package carried a newer one than the local state (a kill after the package was committed
    but before the local state was saved).
    """
    if not pipeline.has_pending_data:
        return []
    drop_normalized_extracts(pipeline)
    if pipeline.list_extracted_load_packages():
        pipeline.normalize()
    if not pipeline.list_normalized_load_packages():
        return []
    return list(pipeline.load().loads_ids)


def extract_notes(pipeline: dlt.Pipeline) -> list[str]:
    """What the source's resources reported about the rows they read (their `notes` metric), e.g.
    app rows dated in the future that loaded without moving the cursor."""
    info = pipeline.last_trace.last_extract_info if pipeline.last_trace else None
    return [
        note
        for metrics in (info.metrics.values() if info else [])
        for metric in metrics
        for resource in metric["resource_metrics"].values()
        for note in resource.custom_metrics.get("notes", [])
    ]


def load_source(name: str, destination_name: str = "duckdb") -> SourceLoad:
    """Extract, normalize and load one source; raise ExtractError with a one-line reason.

    A package a killed run left behind is loaded (and its rows counted) first, then new data.
    """
    if name not in SOURCES:
        raise ExtractError(f"unknown source {name!r}: choose from {', '.join(SOURCES)}")
    started = time.perf_counter()
    pipeline = make_pipeline(name, destination_name)
    try:
        resumed = finish_interrupted(pipeline)
        resumed_rows = rows_of_loads(pipeline, resumed)
        steps = step_seconds(pipeline) if resumed else {}
        disabled = not is_enabled(name)
        if disabled:
            info = pipeline.run(disabled_source(name))
        else:
            forget_disabled_load(pipeline, name)
            with source_arguments(name) as arguments:
                info = pipeline.run(build_source(name, arguments))
        loaded = list(info.loads_ids) if info else []
        rejected = rejected_files(pipeline, resumed + loaded)
    except ExtractError:
        raise
    except Exception as error:  # noqa: BLE001 - every failure becomes one line naming the source
        raise ExtractError(explain(name, error)) from error
    normalized = pipeline.last_trace.last_normalize_info
    rows = dict(resumed_rows)
    for table, count in normalized.row_counts.items() if normalized else []:
        if not table.startswith("_dlt") and table != REJECTED_FILES_TABLE:
            rows[table] = rows.get(table, 0) + count
    seconds = time.perf_counter() - started
    return SourceLoad(
        name,
        pipeline.dataset_name,
        rows,
        resumed + loaded,
        seconds,
        step_seconds(pipeline, steps),
        resumed,
        resumed_rows,
        rejected,
        extract_notes(pipeline),
        disabled,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extract", description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, default: all")
    parser.add_argument("--destination", default="duckdb", choices=("duckdb", "bigquery"))
    parser.add_argument("--debug", action="store_true", help="on failure, show the full traceback")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.sources.split(",") if name.strip()]
    unknown = [name for name in names if name not in SOURCES]
    if unknown:
        print(f"extract failed: unknown source {unknown[0]!r}: choose from {', '.join(SOURCES)}", file=sys.stderr)
        return 1
    for name in names:
        try:
            load = load_source(name, args.destination)
        except ExtractError as error:
            if args.debug:
                raise
            print(f"extract failed: {error}", file=sys.stderr)
            return 1
        print(f"[extract] {load.describe()}", flush=True)
    return 0
