"""`pipeline status`: the last runs and backfills (from the Dagster instance at DAGSTER_HOME), each
source's freshness (the warehouse) and the open alerts (orchestration/monitoring.py).

Exit codes: 0, and 3 with --strict when an alert is open.
"""

import datetime as dt
import os

import duckdb
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from extract.load import duckdb_path
from orchestration.history import recent_runs
from orchestration.instance import dagster_home, fail_dead_runs, get_instance
from orchestration.monitoring import open_alerts, utc_now
from orchestration.settings import on_duckdb
from pipeline.console import age, log, seconds, timestamp
from pipeline.warehouse.connections import WarehouseLocked, connect
from pipeline.warehouse.monitoring import source_freshness

EXIT_OK, EXIT_FAILED, EXIT_ALERTS = 0, 1, 3
BACKFILLS_SHOWN = 3


def show_status(runs: int = 10, strict: bool = False) -> int:
    home = dagster_home()
    instance = get_instance()
    for run_id in fail_dead_runs(instance):
        log(f"[status] recorded run {run_id} as failed: its process was killed")
    now = utc_now()
    log(f"Dagster instance {home}  warehouse {duckdb_path()}  (now {timestamp(now)} UTC)")
    print_runs(instance, runs)
    print_backfills(instance)
    print_freshness(now)
    alerts = open_alerts(instance, now)
    log(f"\nopen alerts: {len(alerts) or 'none'}")
    for alert in alerts:
        log(f"  {alert.line()}")
    return EXIT_ALERTS if strict and alerts else EXIT_OK


def print_runs(instance: DagsterInstance, limit: int) -> None:
    log("\nlast runs")
    shown = recent_runs(instance, limit)
    if not shown:
        log("  none yet: run `pipeline run` (or `make run`)")
    for run in shown:
        loaded = f"{run.total_rows_loaded:,} rows loaded" if run.total_rows_loaded is not None else ""
        tests = (
            f"tests {run.tests.get('pass', 0)} passed, {run.tests.get('warn', 0)} warned, "
            f"{run.tests.get('fail', 0)} failed"
            if run.tests
            else ""
        )
        alerts = f"alerts: {run.alerts}" if run.alerts and run.alerts != "none" else ""
        log(
            f"  {run.run_id[:8]}  {run.job:<14} {run.partition or '-':<10}  {timestamp(run.started_at)}  "
            f"{seconds(run.seconds):>10}  {run.status.lower():<8} {loaded:<20} {tests}  {alerts}".rstrip()
        )
        if run.message:
            log(f"      {run.message.splitlines()[0][:160]}")


def print_backfills(instance: DagsterInstance) -> None:
    for backfill in instance.get_backfills(limit=BACKFILLS_SHOWN):
        filters = RunsFilter(tags={"dagster/backfill": backfill.backfill_id})
        done = instance.get_runs_count(RunsFilter(tags=filters.tags, statuses=[DagsterRunStatus.SUCCESS]))
        failed = instance.get_runs_count(RunsFilter(tags=filters.tags, statuses=[DagsterRunStatus.FAILURE]))
        days = backfill.partition_names or []
        span = f" between {min(days)} and {max(days)}" if days else ""
        log(
            f"\nbackfill {backfill.backfill_id}: {backfill.status.value.lower()}, {len(days)} day(s){span}: "
            f"{done} run(s) succeeded, {failed} failed"
        )


def print_freshness(now: dt.datetime) -> None:
    if not on_duckdb() or not os.path.exists(duckdb_path()):
        return
    log("\nsource freshness (time since dlt last loaded rows; dbt source freshness thresholds)")
    try:
        with connect(duckdb_path(), read_only=True) as connection:
            freshness = source_freshness(connection, now)
    except (WarehouseLocked, duckdb.Error) as error:
        log(f"  unavailable: {error}")
        return
    for source in freshness:
        lag = age(source.lag_seconds) if source.lag_seconds is not None else "-"
        limits = "/".join(age(v) if v else "-" for v in (source.warn_after, source.error_after))
        log(
            f"  {source.source:<12} {source.state:<12} lag {lag:>10}   "
            f"last rows {timestamp(source.last_rows_loaded_at)}   {source.rows:>10,} raw rows   "
            f"(warn/error after {limits})"
        )
