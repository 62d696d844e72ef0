"""Validate, transform, features: every dbt model, seed and snapshot as an asset and every dbt
test as an asset check, built by one `dbt build` per partition (day).

The day reaches dbt the way it always has: as environment variables (ML_FEATURES_RUN_DATE, and
the range of days the new loads can change), which dbt reads when it compiles SQL, so a new day
needs no parsing (pipeline/warehouse/dbt_runner.py RUN_SETTINGS).

A dbt test that fails is a data error: the step fails at once with the failing tests, their
causes and rows, and is not retried; gold is not published (write-audit-publish,
macros/publish.sql). A locked warehouse is transient and retried.

The tests tagged `after_publish` check a view consumers read over the published gold (the realtime
view): they run in a second invocation right after the publish, so they check what is served now,
not the view over the gold the publish is about to replace (on a first build an empty one, so the
speed layer computed every day; figures in docs/benchmarks.md). They fail the run.
"""

import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import AssetCheckResult, AssetExecutionContext, AssetMaterialization, Config, Failure, Output
from dagster_dbt import DbtCliInvocation, DbtCliResource, dbt_assets

from extract.load import duckdb_path
from orchestration.dbt_project import Translator, manifest_path
from orchestration.failures import fail_fast, transient, with_retries
from orchestration.partitions import ONE_DAY_PER_RUN, daily, day_of
from orchestration.settings import on_duckdb
from pipeline.console import first_line, log, seconds
from pipeline.processes import stop_process, stop_signals, stopped_with_us
from pipeline.reporting.run_summary import failed_node_lines
from pipeline.transient import LOCK_MESSAGE, describe_lock
from pipeline.warehouse.connections import connect
from pipeline.warehouse.dbt_runner import RUN_SETTINGS, DbtSummary, summarise
from pipeline.warehouse.monitoring import first_days, last_publish_time, read_manifest
from pipeline.warehouse.published import published_path, refresh_published

PROGRESS_EVERY = 5.0
# dbt's manifest of this process's asset graph: the run's day planning reads the same one
MANIFEST = manifest_path()
# the data tests of the views consumers read over the published gold (their tag), run after the
# publish with the dbt selector of that tag (selectors.yml), so that dbt runs exactly them: beside
# --selector dbt ignores the `--select` dagster-dbt adds for the run's assets (as its own generated
# selectors rely on)
AFTER_PUBLISH = "after_publish"
# how long dbt gets to cancel its queries and exit on SIGINT before it is killed
DBT_STOP_SECONDS = 30.0


class BuildConfig(Config):
    full_refresh: bool = False


def run_settings(day: dt.date, as_of: dt.date, full_refresh: bool) -> dict[str, str]:
    """run_date (the gold's "as of"), and the range of days to (re)build: from the earliest day the
    loads finished since the last publish can change (late rows, updates of what the features read:
    the dbt view planning_load_days), or the day itself, to `as_of`; its data tests check from the
    earliest day any of those rows lands on (tested_from_date), so a status change is tested too."""
    settings = {"run_date": as_of.isoformat()}
    if full_refresh or not on_duckdb():
        return settings
    with connect(duckdb_path(), read_only=True) as connection:
        days = first_days(connection, last_publish_time(connection), read_manifest(MANIFEST))
    from_date = min(days.affected or day, day)
    tested_from_date = min(days.loaded or from_date, from_date)
    return settings | {
        "from_date": from_date.isoformat(),
        "to_date": as_of.isoformat(),
        "tested_from_date": tested_from_date.isoformat(),
    }


def newest_day_built(context: AssetExecutionContext) -> dt.date | None:
    """The newest day whose gold was built (the training set's newest materialized partition)."""
    [training_set] = [key for key in context.assets_def.keys if key.path[-1] == "training_set"]
    built = context.instance.get_materialized_partitions(training_set)
    return max(map(day_of, built), default=None)


@contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """The run settings as ML_FEATURES_<NAME> while dbt runs (and none left from the calling shell)."""
    names = [f"ML_FEATURES_{name.upper()}" for name in RUN_SETTINGS]
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    os.environ.update({f"ML_FEATURES_{name.upper()}": value for name, value in settings.items()})
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)
        os.environ.update(saved)


def failure_message(summary: DbtSummary, published: bool = False) -> str:
    """Which tests (or models) failed, each with its cause and, for a failing test, a few of the rows it kept."""
    failed = summary.failed_nodes()
    tests = sum(1 for node in failed if node["resource_type"] == "test")
    if published:
        consequence = "gold was published (its own tests passed); the views over it fail these tests"
    else:
        skipped = summary.count("model", "skipped")
        consequence = f"{skipped} models downstream of them were skipped; gold was not published"
    lines = [f"validation failed: {tests} dbt test(s) and {len(failed) - tests} other node(s) failed; {consequence}"]
    if on_duckdb():
        with connect(duckdb_path(), read_only=True) as connection:
            lines += failed_node_lines(failed, connection)
    else:
        lines += failed_node_lines(failed, None)
    return "\n".join(lines)


def stream_events(invocation: DbtCliInvocation) -> Iterator[object]:
    """The Dagster events of a running `dbt build`. When the step stops reading them before dbt ends
    (an exception in the step, a check Dagster rejects, Ctrl-C or SIGTERM), dbt is stopped too: SIGINT
    (dbt cancels its queries), SIGKILL after DBT_STOP_SECONDS, or at once on a second Ctrl-C (or
    SIGTERM), also one that comes while dbt stops. And when the process running the step dies (a
    SIGKILL, the OOM killer), a watcher stops dbt the same way. Left running, dbt would hold the
    warehouse's write lock after its run was recorded failed: the runs after it (and the retry)
    failed as locked for as long as the orphan built."""
    watcher = stopped_with_us(invocation.process, DBT_STOP_SECONDS)
    try:
        yield from invocation.stream()
    finally:
        forced = len(stop_signals()) > 1
        stop_process(invocation.process, signal.SIGINT, 0.0 if forced else DBT_STOP_SECONDS)
        watcher.kill()
        watcher.wait()


def publish_file() -> None:
    """Copy the gold dbt just published into the file readers use (pipeline/warehouse/published.py)."""
    publication = refresh_published(duckdb_path())
    if publication:
        log(
            f"[build] published gold of invocation {publication.invocation_id} to {published_path()} "
            f"({', '.join(f'{name} {rows:,}' for name, rows in publication.tables.items())}; "
            f"{seconds(publication.seconds)})"
        )


def whole_graph(context: AssetExecutionContext) -> bool:
    """True when the run builds every dbt asset and check (not a subset picked in the UI)."""
    definition = context.assets_def  # as dagster-dbt tells a subset (its get_subset_selection_for_context)
    return (
        definition.keys_by_output_name == definition.node_keys_by_output_name
        and definition.check_specs_by_output_name == definition.node_check_specs_by_output_name
    )


def lock_failure(command: str, text: str) -> Failure | None:
    """A transient failure naming the holder when dbt's `text` says the warehouse was locked, else None."""
    return transient(f"dbt {command} failed: {describe_lock(text)}") if LOCK_MESSAGE in text else None


def no_results_failure(invocation: DbtCliInvocation, command: str) -> Failure:
    """Why a dbt invocation that wrote no run_results.json failed. A signal ended it (a kill, the OOM
    killer): transient, the step runs again. It could not take the warehouse's lock: transient. Else dbt
    stopped on its own before any node (a selector or setting the project does not have, a runtime
    error at start): the same again would fail the same way, so the step fails at once with dbt's
    own error lines."""
    code = invocation.process.returncode
    if code is not None and code < 0:
        return transient(f"dbt {command} was ended by signal {-code} before it wrote its results")
    described = str(getattr(invocation.get_error(), "description", "") or "")
    locked = lock_failure(command, described)
    if locked:
        return locked
    errors = described.partition("Errors parsed from dbt logs:")[2]
    said = " ".join(errors.split())  # dbt's message spans lines: "Encountered an error: Runtime Error ..."
    return fail_fast(
        f"dbt {command} stopped before running any node (exit code {code}): "
        + (said[:600] if said else "dbt logged no error; its output is in the run's log file")
    )


def run_dbt(context: AssetExecutionContext, dbt: DbtCliResource, args: list[str]) -> Iterator[object]:
    """One dbt invocation of the step: its Dagster events, a progress line every few seconds and one
    per failing test; returns its summary (a killed dbt, a lock and a failure before any node raise)."""
    started = last = time.perf_counter()
    done = 0
    invocation = dbt.cli(args, context=context, raise_on_error=False)
    for event in stream_events(invocation):
        done += 1
        if isinstance(event, AssetCheckResult) and not event.passed:
            log(f"[build] {event.severity.value} {event.asset_key.to_user_string()}: {event.check_name}")
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY and isinstance(event, Output | AssetMaterialization | AssetCheckResult):
            log(f"[build] {done} models and tests done ({seconds(now - started)})")
            last = now
        yield event
    summary = DbtSummary(success=invocation.is_successful())
    if not (invocation.target_path / "run_results.json").exists():
        raise no_results_failure(invocation, args[0])
    summarise(invocation.get_artifact("run_results.json"), summary)
    if not summary.success:
        text = "\n".join(summary.failures)
        locked = lock_failure(args[0], text)
        if locked:
            raise locked
        if not summary.failed_nodes():
            raise fail_fast(f"dbt {args[0]} failed before running any node:\n  " + first_line(text, 600))
    return summary


@dbt_assets(
    manifest=MANIFEST,
    dagster_dbt_translator=Translator(),
    partitions_def=daily,
    backfill_policy=ONE_DAY_PER_RUN,
)
@with_retries
def dbt_models(context: AssetExecutionContext, dbt: DbtCliResource, config: BuildConfig) -> Iterator[object]:
    if on_duckdb():
        publish_file()  # gold a `dbt build` by hand (or a stopped dbt, just before) published: readers get it now
    # gold never goes back in time: a day older than the newest built (a backfill's retry that runs
    # after later days, a day re-run by hand) rebuilds from itself up to the newest day, as of that day
    day = day_of(context.partition_key)
    as_of = max(day, newest_day_built(context) or day)
    settings = run_settings(day, as_of, config.full_refresh)
    days = f" for {settings['from_date']} .. {settings['to_date']}" if "from_date" in settings else ""
    log(f"[build] dbt build{days} (run_date {settings['run_date']})")
    # a subset picked in the UI keeps every test it selected in its build
    after_publish = ["--exclude", f"tag:{AFTER_PUBLISH}"] if whole_graph(context) else []
    args = ["build", "--exclude-resource-type", "unit_test", *after_publish]
    with environment(settings):
        summary = yield from run_dbt(context, dbt, [*args, *(["--full-refresh"] if config.full_refresh else [])])
        if not summary.success:
            raise fail_fast(failure_message(summary))
        if on_duckdb():
            publish_file()
        if after_publish:
            log(f"[build] dbt test --selector {AFTER_PUBLISH}: the views consumers read, over the gold just published")
            summary = yield from run_dbt(context, dbt, ["test", "--selector", AFTER_PUBLISH])
            if not summary.success:
                raise fail_fast(failure_message(summary, published=True))
