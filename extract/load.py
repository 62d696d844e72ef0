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
    steps: dict[str, float] = field(default_factory=dict)

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


# each source's dlt config section, and the demo data it reads while `demo = true` in that section
CONFIG_SECTIONS = {"app": "app_database", "events": "event_stream", "fx": "fx_api", "chargebacks": "bucket_files"}


def demo_dir() -> Path:
    """The demo sources written by `python -m demo.generate`: `<data dir>/demo`."""
    return data_dir() / "demo"


def uses_demo(name: str) -> bool:
    """Whether the source reads the bundled demo data (`sources.<section>.demo`, default true)."""
    value = dlt.config.get(f"sources.{CONFIG_SECTIONS[name]}.demo")
    return value is None or str(value).lower() in ("true", "1", "yes")


def require_demo_file(name: str, path: Path) -> str:
    if not path.exists():
        raise ExtractError(f"{name}: demo data {path} is missing: run `python -m demo.generate --out {demo_dir()}`")
    return str(path)


@contextmanager
def source_arguments(name: str) -> Iterator[dict[str, str]]:
    """Arguments that point a source at the demo data; empty when it reads its own configuration.

    The demo FX API is a local HTTP server started for the length of the load, with a one-off token.
    """
    if not uses_demo(name):
        yield {}
    elif name == "app":
        yield {"credentials": f"sqlite:///{require_demo_file(name, demo_dir() / 'app.sqlite')}"}
    elif name == "events":
        yield {"bucket_url": require_demo_file(name, demo_dir() / "events")}
    elif name == "chargebacks":
        yield {"bucket_url": require_demo_file(name, demo_dir() / "bucket" / "chargebacks")}
    else:
        from demo.fx_api_server import FxApiServer

        token = secrets.token_urlsafe(16)
        rates = Path(require_demo_file(name, demo_dir() / "fx_rates.parquet"))
        with FxApiServer(rates, token=token) as server:
            yield {"base_url": server.start(), "token": token}


def build_source(name: str, arguments: dict[str, str]) -> dlt.sources.DltSource:
    """The dlt source object for one of SOURCES; what `arguments` does not set comes from dlt's config."""
    if name == "app":
        return app_database(**arguments)
    if name == "events":
        return event_stream(**arguments)
    if name == "fx":
        return fx_api(**arguments)
    return bucket_files(**arguments)


def explain(source: str, error: Exception) -> str:
    """One line naming the source and what is wrong, instead of a stack trace."""
    if isinstance(error, ConfigFieldMissingException):
        missing = ", ".join(error.fields)
        return f"{source}: missing setting(s) {missing}: set them in .dlt/config.toml, .dlt/secrets.toml or env"
    cause: BaseException = error
    while cause.__cause__ is not None and not isinstance(cause.__cause__, StopIteration | GeneratorExit):
        cause = cause.__cause__
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"{source}: {type(cause).__name__}: {first_line}"


def load_source(name: str, destination_name: str = "duckdb") -> SourceLoad:
    """Extract, normalize and load one source; raise ExtractError with a one-line reason."""
    if name not in SOURCES:
        raise ExtractError(f"unknown source {name!r}: choose from {', '.join(SOURCES)}")
    started = time.perf_counter()
    dataset = f"raw_{name}"
    pipeline = dlt.pipeline(
        pipeline_name=f"ml_features_{name}",
        destination=make_destination(destination_name),
        dataset_name=dataset,
        pipelines_dir=str(data_dir() / ".dlt_pipelines"),
    )
    try:
        with source_arguments(name) as arguments:
            source = build_source(name, arguments)
            info = pipeline.run(source)
    except (ConfigFieldMissingException, PipelineStepFailed, OSError, ValueError) as error:
        raise ExtractError(explain(name, error)) from error
    rows = {
        table: count
        for table, count in pipeline.last_trace.last_normalize_info.row_counts.items()
        if not table.startswith("_dlt")
    }
    steps = {
        step.step: (step.finished_at - step.started_at).total_seconds()
        for step in pipeline.last_trace.steps
        if step.finished_at is not None and step.step in ("extract", "normalize", "load")
    }
    return SourceLoad(name, dataset, rows, list(info.loads_ids), time.perf_counter() - started, steps)


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
