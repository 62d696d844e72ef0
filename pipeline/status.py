"""`pipeline status`: the last runs, each source's freshness, backfill progress and the open alerts."""

import json
import os

import duckdb

from extract.load import duckdb_path
from pipeline.alerts import open_alerts
from pipeline.console import age, log, seconds, timestamp
from pipeline.monitoring import has_monitoring, recent_runs, source_freshness
from pipeline.retry import RetryPolicy
from pipeline.run_journal import is_alive
from pipeline.run_log import pending_file, utc_now
from pipeline.runner import EXIT_ALERTS, EXIT_FAILED, EXIT_OK
from pipeline.warehouse import WarehouseLocked, connect, relation_exists


def show_status(runs: int = 10, strict: bool = False, policy: RetryPolicy | None = None) -> int:
    path = duckdb_path()
    if not os.path.exists(path):
        log(f"no warehouse at {path} yet: run `pipeline run` (or `make run`) first")
        return EXIT_FAILED
    try:
        with connect(path, read_only=True, policy=policy, prefix="[status] ") as connection:
            return print_status(connection, runs, strict)
    except WarehouseLocked as error:
        log(f"status unavailable: {error}")
        return EXIT_FAILED


def unrecorded_runs() -> dict[str, str]:
    """run id -> status of the runs a locked warehouse kept out of the run log (recorded by the next run)."""
    try:
        lines = pending_file().read_text().splitlines()
    except OSError:
        return {}
    runs = [json.loads(line) for line in lines if line.strip()]
    return {run["run_id"]: run["status"] for run in runs}


def print_status(connection: duckdb.DuckDBPyConnection, runs: int, strict: bool) -> int:
    now = utc_now()
    log(f"warehouse {duckdb_path()}  (now {timestamp(now)} UTC)")
    log("\nlast runs")
    rows = recent_runs(connection, runs) if has_monitoring(connection) else []
    if not rows:
        log("  none recorded yet")
    unrecorded = unrecorded_runs()
    for run in rows:
        if run.status == "running" and run.run_id in unrecorded:
            run.status, run.message = unrecorded[run.run_id], f"kept in {pending_file()} (the warehouse was locked)"
        elif run.status == "running" and not is_alive(run.run_id):
            run.status, run.message = "killed", "ended without recording an outcome; the next run records what it did"
        tests = (
            f"tests {run.tests_passed} passed, {run.tests_failed} failed"
            if run.tests_passed or run.tests_failed
            else ""
        )
        loaded = f"{run.rows_loaded:,} rows loaded" if run.rows_loaded is not None else ""
        log(
            f"  {run.run_id}  {run.command:<8} {run.run_date}  {timestamp(run.started_at)}  "
            f"{seconds(run.seconds):>10}  {run.status:<8} {loaded:<20} {tests}"
        )
        if run.status in ("failed", "killed") and run.message:
            log(f"      {run.message.splitlines()[0][:160]}")
    log("\nsource freshness (time since dlt last loaded rows; dbt source freshness thresholds)")
    for source in source_freshness(connection, now):
        lag = age(source.lag_seconds) if source.lag_seconds is not None else "-"
        limits = "/".join(age(v) if v else "-" for v in (source.warn_after, source.error_after))
        log(
            f"  {source.source:<12} {source.state:<12} lag {lag:>10}   "
            f"last rows {timestamp(source.last_rows_loaded_at)}   {source.rows:>10,} raw rows   "
            f"(warn/error after {limits})"
        )
    if relation_exists(connection, "monitoring", "backfill_days"):
        backfill = connection.sql(
            "select target, count(*) filter (where status = 'done'), count(*) filter (where status = 'failed'), "
            "min(day), max(day) from monitoring.backfill_days group by all order by all"
        ).fetchall()
        for target, done, failed, first, last in backfill:
            log(f"\nbackfill ({target}): {done} day(s) done, {failed} failed, between {first} and {last}")
    alerts = open_alerts(connection) if relation_exists(connection, "monitoring", "alerts") else []
    log(f"\nopen alerts: {len(alerts) or 'none'}")
    for alert in alerts:
        log(f"  {alert.line()}")
    return EXIT_ALERTS if strict and alerts else EXIT_OK
