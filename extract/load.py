"""Load the raw sources into the warehouse with dlt: `python -m extract [--sources ...]`.

One dlt pipeline per source, each into its own raw dataset (`raw_app`, `raw_events`, `raw_fx`,
`raw_chargebacks`). Sources are configured in `.dlt/config.toml`, `.dlt/secrets.toml` or
environment variables (see the README); the demo FX API is started here when its base URL is
`demo`.
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
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.pipeline.exceptions import PipelineStepFailed

from extract.app_database import app_database
from extract.bucket_files import bucket_files
from extract.event_stream import event_stream
from extract.fx_api import fx_api

SOURCES = ("app", "events", "fx", "chargebacks")


class ExtractError(RuntimeError):
    """A source could not be loaded; the message names the source and the reason."""


@dataclass
class SourceLoad:
    """What one source's load did."""

    source: str
    dataset: str
    rows: dict[str, int] = field(default_factory=dict)
    load_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        counts = ", ".join(f"{table} {count:,}" for table, count in sorted(self.rows.items())) or "no new rows"
        return f"{self.source:<12} -> {self.dataset:<16} {counts} ({self.seconds:.1f} s)"


def data_dir() -> Path:
    """Where the pipeline keeps its files: `ML_FEATURES_DATA_DIR`, default `data/`."""
    return Path(os.environ.get("ML_FEATURES_DATA_DIR", "data"))


def duckdb_path() -> str:
    """The warehouse file: `ML_FEATURES_DUCKDB_PATH`, default `<data dir>/warehouse.duckdb`."""
    return os.environ.get("ML_FEATURES_DUCKDB_PATH", str(data_dir() / "warehouse.duckdb"))


def make_destination(name: str) -> object:
    """The dlt destination for `name` (`duckdb` writes the local warehouse file)."""
    if name == "duckdb":
        path = Path(duckdb_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(str(path))
    if name == "bigquery":
        return dlt.destinations.bigquery()
    raise ExtractError(f"unknown destination {name!r}: use duckdb or bigquery")


@contextmanager
def source_settings(name: str) -> Iterator[dict[str, str]]:
    """Explicit arguments for a source: only the demo FX API needs them (a local server and a token)."""
    if name != "fx" or str(dlt.config.get("sources.fx_api.base_url") or "demo") != "demo":
        yield {}
        return
    from demo.fx_api_server import FxApiServer

    rates = data_dir() / "demo" / "fx_rates.parquet"
    if not rates.exists():
        raise ExtractError(f"fx: demo rates file {rates} is missing: run `python -m demo.generate` first")
    token = secrets.token_urlsafe(16)
    with FxApiServer(rates, token=token) as server:
        yield {"base_url": server.start(), "token": token}


def build_source(name: str, settings: dict[str, str]) -> dlt.sources.DltSource:
    """The dlt source object for one of SOURCES, configured from dlt's config providers."""
    if name == "app":
        return app_database()
    if name == "events":
        return event_stream()
    if name == "fx":
        return fx_api(**settings)
    if name == "chargebacks":
        return bucket_files()
    raise ExtractError(f"unknown source {name!r}: choose from {', '.join(SOURCES)}")


def explain(source: str, error: Exception) -> str:
    """One line naming the source and what is wrong, instead of a stack trace."""
    if isinstance(error, ConfigFieldMissingException):
        missing = ", ".join(error.fields)
        return f"{source}: missing setting(s) {missing}: set them in .dlt/config.toml, .dlt/secrets.toml or env"
    cause: BaseException = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"{source}: {type(cause).__name__}: {first_line}"


def load_source(name: str, destination_name: str = "duckdb") -> SourceLoad:
    """Extract, normalize and load one source; raise ExtractError with a one-line reason."""
    started = time.perf_counter()
    dataset = f"raw_{name}"
    pipeline = dlt.pipeline(
        pipeline_name=f"ml_features_{name}",
        destination=make_destination(destination_name),
        dataset_name=dataset,
        pipelines_dir=str(data_dir() / ".dlt_pipelines"),
    )
    try:
        with source_settings(name) as settings:
            source = build_source(name, settings)
            info = pipeline.run(source)
    except (ConfigFieldMissingException, PipelineStepFailed, OSError, ValueError) as error:
        raise ExtractError(explain(name, error)) from error
    rows = {
        table: count
        for table, count in pipeline.last_trace.last_normalize_info.row_counts.items()
        if not table.startswith("_dlt")
    }
    return SourceLoad(name, dataset, rows, list(info.loads_ids), time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extract", description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, default: all")
    parser.add_argument("--destination", default="duckdb", choices=("duckdb", "bigquery"))
    args = parser.parse_args(argv)
    for name in args.sources.split(","):
        try:
            load = load_source(name.strip(), args.destination)
        except ExtractError as error:
            print(f"extract failed: {error}", file=sys.stderr)
            return 1
        print(f"[extract] {load.describe()}", flush=True)
    return 0
