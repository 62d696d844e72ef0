"""Prometheus metrics in the text exposition format, written after every run (from Dagster's run
records and events: orchestration/monitoring.py), for monitoring outside Dagster's UI.

    <data dir>/metrics/pipeline.prom

Point node_exporter's textfile collector at the folder (`--collector.textfile.directory`), or
serve the file any other way. Counters (`*_total`) count every run the Dagster instance holds, so
they only grow; gauges describe the last run, the last build and the sources now. The file is
replaced atomically, so a scrape never reads half of it.
"""

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from extract.load import data_dir, duckdb_path
from orchestration.history import RunInfo, recent_runs
from orchestration.monitoring import runs_failed
from orchestration.settings import on_duckdb
from pipeline.reporting.alerts import DEFAULT_LIMITS, RULES, Alert
from pipeline.warehouse.connections import WarehouseLocked, connect
from pipeline.warehouse.monitoring import Freshness, source_freshness

PREFIX = "ml_features_"


def metrics_file() -> Path:
    return data_dir() / "metrics" / "pipeline.prom"


def escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """An integer as such, anything else at full precision (a unix timestamp needs every digit)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class Family:
    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, object], float]] = field(default_factory=list)

    def add(self, value: float | None, **labels: object) -> "Family":
        if value is not None:
            self.samples.append((labels, float(value)))
        return self

    def text(self) -> str:
        lines = [f"# HELP {PREFIX}{self.name} {self.help}", f"# TYPE {PREFIX}{self.name} {self.kind}"]
        for labels, value in self.samples:
            label_text = ",".join(f'{key}="{escape(val)}"' for key, val in labels.items())
            lines.append(
                f"{PREFIX}{self.name}{{{label_text}}} {number(value)}"
                if label_text
                else f"{PREFIX}{self.name} {number(value)}"
            )
        return "\n".join(lines)


def counters(instance: DagsterInstance) -> list[Family]:
    runs = Family("runs_total", "counter", "Runs in the Dagster instance, by status.")
    for status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        runs.add(instance.get_runs_count(RunsFilter(statuses=[status])), status=status.value.lower())
    failures = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    return [runs, Family("run_failures_total", "counter", "Failed (or killed) runs.").add(failures)]


def unix(moment: dt.datetime | None) -> float | None:
    return moment.replace(tzinfo=dt.UTC).timestamp() if moment else None


def last_run(run: RunInfo) -> list[Family]:
    info = Family("last_run_info", "gauge", "The last run (value 1), described by its labels.")
    info.add(1, run_id=run.run_id, job=run.job, partition=run.partition, status=run.status.lower())
    step_seconds = Family("step_duration_seconds", "gauge", "Seconds each step of the last run took.")
    step_ok = Family("step_success", "gauge", "1 when a step of the last run succeeded (or was skipped), 0 if not.")
    for step, (status, took) in run.steps.items():
        step_seconds.add(took, step=step)
        step_ok.add(0 if status == "failure" else 1, step=step)
    loaded = Family("last_run_rows_loaded", "gauge", "Rows the last run loaded, by source.")
    for source, rows in sorted(run.rows_loaded.items()):
        loaded.add(rows, source=source)
    return [
        info,
        Family("last_run_success", "gauge", "1 when the last run succeeded, else 0.").add(
            1 if run.status == "SUCCESS" else 0
        ),
        Family("last_run_timestamp_seconds", "gauge", "When the last run ended (unix time).").add(
            unix(run.ended_at or run.started_at)
        ),
        Family("last_run_duration_seconds", "gauge", "Seconds the last run took.").add(run.seconds),
        step_seconds,
        step_ok,
        loaded,
    ]


def build_state(runs: list[RunInfo]) -> list[Family]:
    """Gauges of the latest build: rows per gold table, test results, the last success."""
    rows = Family("gold_rows", "gauge", "Rows in each gold table after the latest successful build.")
    tests = Family("dbt_tests", "gauge", "dbt test results of the latest build, by status.")
    counted = next((run for run in runs if run.gold_rows), None)
    for table, count in sorted(counted.gold_rows.items()) if counted else []:
        rows.add(count, table=table)
    tested = next((run for run in runs if run.tests), None)
    for status, count in sorted(tested.tests.items()) if tested else []:
        tests.add(count, status=status)
    success = next((run for run in runs if run.status == "SUCCESS"), None)
    last_success = Family("last_success_timestamp_seconds", "gauge", "When the last successful run ended (unix time).")
    return [rows, tests, last_success.add(unix(success.ended_at) if success else None)]


def freshness_now(now: dt.datetime) -> list[Freshness]:
    if not on_duckdb() or not os.path.exists(duckdb_path()):
        return []
    try:
        with connect(duckdb_path(), read_only=True) as connection:
            return source_freshness(connection, now)
    except (WarehouseLocked, duckdb.Error):
        return []


def render(instance: DagsterInstance, alerts: list[Alert], now: dt.datetime, runs_read: int = 30) -> str:
    runs = recent_runs(instance, runs_read)
    families = counters(instance) + (last_run(runs[0]) if runs else []) + build_state(runs)
    failed, finished = runs_failed(instance, now, DEFAULT_LIMITS)
    families.append(
        Family("error_rate", "gauge", "Share of the finished runs of the last 24 h that failed.").add(
            failed / finished if finished else 0
        )
    )
    lag = Family(
        "source_freshness_lag_seconds",
        "gauge",
        "Seconds since dlt last loaded rows of each source (dbt source freshness's clock).",
    )
    for source in freshness_now(now):
        lag.add(source.lag_seconds, source=source.source)
    open_by_rule = Family("alerts_open", "gauge", "Open alerts, by rule (see pipeline/reporting/alerts.py).")
    for rule in RULES:
        open_by_rule.add(sum(1 for alert in alerts if alert.rule == rule), rule=rule)
    families += [lag, open_by_rule]
    return "\n".join(family.text() for family in families) + "\n"


def write_metrics(instance: DagsterInstance, alerts: list[Alert], now: dt.datetime, path: Path | None = None) -> Path:
    """Render the metrics and replace the file atomically."""
    path = path or metrics_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".prom.{os.getpid()}.tmp")
    temporary.write_text(render(instance, alerts, now))
    os.replace(temporary, path)
    return path
