"""Prometheus metrics in the text exposition format, written after every run.

    <data dir>/metrics/pipeline.prom

Point node_exporter's textfile collector at the folder (`--collector.textfile.directory`), or
serve the file any other way. Counters (`*_total`) are summed over the whole run log, so they only
grow; gauges describe the last run, the last build and the sources now. The file is replaced
atomically, so a scrape never reads half of it.
"""

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from extract.load import data_dir
from pipeline.alerts import DEFAULT_LIMITS, RULES, Alert, Thresholds, error_rate
from pipeline.monitoring import Freshness, has_monitoring
from pipeline.run_log import RunRecord

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


def counters(connection: duckdb.DuckDBPyConnection) -> list[Family]:
    runs = Family("runs_total", "counter", "Pipeline runs in the run log, by command and status.")
    for command, status, count in connection.sql(
        "select command, status, count(*) from monitoring.pipeline_runs group by all order by all"
    ).fetchall():
        runs.add(count, command=command, status=status)
    [(failures,)] = connection.sql(
        "select count(*) from monitoring.pipeline_runs where status in ('failed', 'killed')"
    ).fetchall()
    loaded = Family("rows_loaded_total", "counter", "Rows dlt loaded into the raw layer, by source.")
    for source, rows in connection.sql(
        "select source, sum(rows_loaded) from monitoring.source_rows group by all order by all"
    ).fetchall():
        loaded.add(rows, source=source)
    return [runs, Family("run_failures_total", "counter", "Failed (or killed) pipeline runs.").add(failures), loaded]


def last_run(run: RunRecord) -> list[Family]:
    ended = run.ended_at or run.started_at
    info = Family("last_run_info", "gauge", "The last run (value 1), described by its labels.")
    info.add(1, run_id=run.run_id, command=run.command, target=run.target, run_date=run.run_date, status=run.status)
    stage_seconds = Family("stage_duration_seconds", "gauge", "Seconds each stage of the last run took.")
    stage_rows = Family("stage_rows", "gauge", "Rows into and out of each stage of the last run.")
    stage_ok = Family(
        "stage_success", "gauge", "1 when a stage of the last run succeeded (or was skipped), 0 if it failed."
    )
    for stage in run.stages:
        stage_seconds.add(stage.seconds, stage=stage.stage)
        stage_ok.add(0 if stage.status == "failed" else 1, stage=stage.stage)
        stage_rows.add(stage.rows_in, stage=stage.stage, direction="in").add(
            stage.rows_out, stage=stage.stage, direction="out"
        )
    loaded = Family("last_run_rows_loaded", "gauge", "Rows the last run loaded, by source.")
    for source in dict.fromkeys(source for source, _, _ in run.source_rows):
        loaded.add(sum(rows for s, _, rows in run.source_rows if s == source), source=source)
    return [
        info,
        Family("last_run_success", "gauge", "1 when the last run succeeded or had nothing to do, else 0.").add(
            0 if run.status == "failed" else 1
        ),
        Family("last_run_timestamp_seconds", "gauge", "When the last run ended (unix time).").add(
            ended.replace(tzinfo=dt.UTC).timestamp()
        ),
        Family("last_run_duration_seconds", "gauge", "Seconds the last run took.").add(run.seconds),
        Family("rows_processed", "gauge", "Rows the last run processed: loaded by dlt, then written to gold.")
        .add(run.rows_loaded, stage="extract")
        .add(
            sum(m.rows_out or 0 for m in run.model_rows if m.layer == "marts") if run.model_rows else None,
            stage="build",
        ),
        stage_seconds,
        stage_ok,
        stage_rows,
        loaded,
    ]


def build_state(connection: duckdb.DuckDBPyConnection) -> list[Family]:
    """Gauges of the latest successful build: rows per relation and test results."""
    rows = Family("model_rows", "gauge", "Rows in each relation after the latest successful build.")
    latest = connection.sql(
        "select run_id from monitoring.pipeline_runs where status = 'success' and dbt_invocation_id is not null "
        "order by started_at desc limit 1"
    ).fetchall()
    tests = Family("dbt_tests", "gauge", "dbt test results of the latest build, by status.")
    if latest:
        for name, layer, count in connection.execute(
            "select name, layer, rows_out from monitoring.model_row_counts where run_id = ? order by all",
            [latest[0][0]],
        ).fetchall():
            rows.add(count, model=name, layer=layer)
    last_build = connection.sql(
        "select run_id from monitoring.pipeline_runs where dbt_invocation_id is not null "
        "order by started_at desc limit 1"
    ).fetchall()
    if last_build:
        for status, count in connection.execute(
            "select status, count(*) from monitoring.dbt_node_results where run_id = ? and resource_type = 'test' "
            "group by all order by all",
            [last_build[0][0]],
        ).fetchall():
            tests.add(count, status=status)
    [(success_at,)] = connection.sql(
        "select max(ended_at) from monitoring.pipeline_runs where status = 'success'"
    ).fetchall()
    last_success = Family("last_success_timestamp_seconds", "gauge", "When the last successful run ended (unix time).")
    last_success.add(success_at.replace(tzinfo=dt.UTC).timestamp() if success_at else None)
    return [rows, tests, last_success]


def render(
    run: RunRecord,
    connection: duckdb.DuckDBPyConnection | None,
    freshness: list[Freshness],
    alerts: list[Alert],
    now: dt.datetime,
    limits: Thresholds = DEFAULT_LIMITS,
) -> str:
    families = last_run(run)
    if connection is not None and has_monitoring(connection):
        families = counters(connection) + families + build_state(connection)
        failed, finished = error_rate(connection, now, limits)
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
    for source in freshness:
        lag.add(source.lag_seconds, source=source.source)
    open_by_rule = Family("alerts_open", "gauge", "Open alerts, by rule (see pipeline/alerts.py).")
    for rule in RULES:
        open_by_rule.add(sum(1 for alert in alerts if alert.rule == rule), rule=rule)
    families += [lag, open_by_rule]
    return "\n".join(family.text() for family in families) + "\n"


def write_metrics(text: str, path: Path | None = None) -> Path:
    """Replace the metrics file atomically."""
    path = path or metrics_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".prom.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path
