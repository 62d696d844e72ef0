"""Alerts evaluated after every run against the run log, kept open in monitoring.alerts until they clear.

    row_drop    rows dropped more than 20% against the trailing average of the previous successful
                runs (at most 7, at least 3): rows loaded by the run (in all and per source, when a
                source delivered), and the rows of every gold (marts) relation after the build.
                A source's first load (the initial backfill) is not part of its baseline, and a run
                where a source delivered nothing is left to freshness: FX has no weekend rates and
                chargeback files arrive weekly.
    slow_stage  a stage took over twice its usual (median) time over the previous successful runs,
                and at least 5 s longer (sub-second stages jitter).
    error_rate  over 1% of the finished runs of the last 24 hours failed.
    warned_test a dbt test of severity warn found failing rows (status warn) in the run's build; it
                resolves when a later build runs the test and it passes.

An alert stays open while its rule keeps firing; a run that evaluates the same rule and subject
without it firing resolves it. Each new or open alert is one log line starting with ALERT.
"""

import datetime as dt
import statistics
import uuid
from dataclasses import dataclass

import duckdb

from pipeline.console import log, seconds
from pipeline.run_log import RunRecord

RULES = ("row_drop", "slow_stage", "error_rate", "warned_test")
ROW_COMMANDS = ("run", "backfill")


@dataclass(frozen=True)
class Thresholds:
    row_drop: float = 0.20
    slow_factor: float = 2.0
    slow_min_seconds: float = 5.0
    error_rate: float = 0.01
    error_window: dt.timedelta = dt.timedelta(hours=24)
    baseline_runs: int = 7
    min_baseline_runs: int = 3


DEFAULT_LIMITS = Thresholds()


@dataclass
class Alert:
    rule: str
    subject: str
    value: float
    baseline: float
    message: str
    opened_at: dt.datetime | None = None
    opened_by_run: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.subject

    def line(self) -> str:
        since = f" (open since {self.opened_at:%Y-%m-%d %H:%M} UTC)" if self.opened_at else ""
        return f"ALERT [{self.rule}] {self.message}{since}"


@dataclass
class Evaluation:
    firing: list[Alert]
    evaluated: set[tuple[str, str]]


def row_drop(subject: str, label: str, value: float, history: list[float], limits: Thresholds) -> Alert | None:
    if len(history) < limits.min_baseline_runs:
        return None
    average = statistics.fmean(history)
    if average <= 0 or value >= (1 - limits.row_drop) * average:
        return None
    change = value / average - 1
    return Alert(
        "row_drop",
        subject,
        value,
        average,
        f"{label}: {value:,.0f} rows, {change:+.0%} against the average {average:,.0f} of the previous "
        f"{len(history)} runs (alert below -{limits.row_drop:.0%})",
    )


def loaded_history(
    connection: duckdb.DuckDBPyConnection, run: RunRecord, source: str | None, limit: int
) -> list[float]:
    """Rows loaded (by `source`, or in all) by the previous successful runs that loaded any, initial load excluded."""
    rows = connection.execute(
        """
        with loaded as (
            select runs.run_id, runs.started_at, sum(rows.rows_loaded) as rows_loaded
            from monitoring.pipeline_runs as runs
            inner join monitoring.source_rows as rows on runs.run_id = rows.run_id
            where runs.status = 'success' and runs.target = ? and runs.command in ('run', 'backfill')
                and (cast(? as varchar) is null or rows.source = ?)
            group by all
            having sum(rows.rows_loaded) > 0
        ),
        ranked as (select *, row_number() over (order by started_at) as nth from loaded)
        select rows_loaded from ranked
        where nth > 1 and run_id <> ? and started_at < ?
        order by started_at desc
        limit ?
        """,
        [run.target, source, source, run.run_id, run.started_at, limit],
    ).fetchall()
    return [float(value) for (value,) in rows]


def model_history(connection: duckdb.DuckDBPyConnection, run: RunRecord, unique_id: str, limit: int) -> list[float]:
    rows = connection.execute(
        """
        select counts.rows_out
        from monitoring.model_row_counts as counts
        inner join monitoring.pipeline_runs as runs on counts.run_id = runs.run_id
        where runs.status = 'success' and runs.target = ? and counts.unique_id = ? and counts.rows_out is not null
            and runs.run_id <> ? and runs.started_at < ?
        order by runs.started_at desc
        limit ?
        """,
        [run.target, unique_id, run.run_id, run.started_at, limit],
    ).fetchall()
    return [float(value) for (value,) in rows]


def stage_history(connection: duckdb.DuckDBPyConnection, run: RunRecord, stage: str, limit: int) -> list[float]:
    rows = connection.execute(
        """
        select stages.seconds
        from monitoring.pipeline_stage_runs as stages
        inner join monitoring.pipeline_runs as runs on stages.run_id = runs.run_id
        where runs.status = 'success' and stages.status = 'success' and runs.target = ? and stages.stage = ?
            and (runs.command = ? or (runs.command in ('run', 'backfill') and ? in ('run', 'backfill')))
            and runs.run_id <> ? and runs.started_at < ?
        order by runs.started_at desc
        limit ?
        """,
        [run.target, stage, run.command, run.command, run.run_id, run.started_at, limit],
    ).fetchall()
    return [float(value) for (value,) in rows]


def row_alerts(
    connection: duckdb.DuckDBPyConnection, run: RunRecord, limits: Thresholds, evaluation: Evaluation
) -> None:
    n = limits.baseline_runs
    if run.stage("extract") is not None and run.rows_loaded > 0:
        subjects = [("rows_loaded:all", "rows loaded from all sources", None, float(run.rows_loaded))]
        by_source: dict[str, int] = {}
        for source, _, rows in run.source_rows:
            by_source[source] = by_source.get(source, 0) + rows
        subjects += [(f"rows_loaded:{s}", f"rows loaded from {s}", s, float(r)) for s, r in by_source.items() if r]
        for subject, label, source, value in subjects:
            evaluation.evaluated.add(("row_drop", subject))
            alert = row_drop(subject, label, value, loaded_history(connection, run, source, n), limits)
            evaluation.firing += [alert] if alert else []
    for model in run.model_rows:
        if model.layer != "marts" or model.rows_out is None:
            continue
        subject = f"model_rows:{model.name}"
        evaluation.evaluated.add(("row_drop", subject))
        history = model_history(connection, run, model.unique_id, n)
        alert = row_drop(subject, f"rows in {model.name}", float(model.rows_out), history, limits)
        evaluation.firing += [alert] if alert else []


def slow_alerts(
    connection: duckdb.DuckDBPyConnection, run: RunRecord, limits: Thresholds, evaluation: Evaluation
) -> None:
    for stage in run.stages:
        if stage.status != "success":
            continue
        subject = f"stage:{stage.stage}"
        evaluation.evaluated.add(("slow_stage", subject))
        history = stage_history(connection, run, stage.stage, limits.baseline_runs)
        if len(history) < limits.min_baseline_runs:
            continue
        usual = statistics.median(history)
        if stage.seconds > limits.slow_factor * usual and stage.seconds - usual >= limits.slow_min_seconds:
            evaluation.firing.append(
                Alert(
                    "slow_stage",
                    subject,
                    stage.seconds,
                    usual,
                    f"stage {stage.stage} took {seconds(stage.seconds)}, {stage.seconds / usual:.1f}x its usual "
                    f"{seconds(usual)} (median of the previous {len(history)} runs; "
                    f"alert above {limits.slow_factor:g}x)",
                )
            )


def error_rate(connection: duckdb.DuckDBPyConnection, now: dt.datetime, limits: Thresholds) -> tuple[int, int]:
    """(failed, finished) runs that started in the error window; a killed run counts as failed."""
    [(failed, finished)] = connection.execute(
        "select count(*) filter (where status in ('failed', 'killed')), count(*) from monitoring.pipeline_runs "
        "where status in ('success', 'failed', 'killed') and started_at >= ?",
        [now - limits.error_window],
    ).fetchall()
    return int(failed), int(finished)


def error_alerts(
    connection: duckdb.DuckDBPyConnection, now: dt.datetime, limits: Thresholds, evaluation: Evaluation
) -> None:
    evaluation.evaluated.add(("error_rate", "runs"))
    failed, finished = error_rate(connection, now, limits)
    if finished and failed / finished > limits.error_rate:
        hours = limits.error_window.total_seconds() / 3600
        evaluation.firing.append(
            Alert(
                "error_rate",
                "runs",
                failed / finished,
                limits.error_rate,
                f"{failed} of the {finished} runs of the last {hours:g} h failed ({failed / finished:.0%}; "
                f"alert above {limits.error_rate:.0%})",
            )
        )


def warned_test_alerts(run: RunRecord, evaluation: Evaluation) -> None:
    """One alert per test the run's build ran that warned; every test it ran is evaluated (so one
    that passes again resolves its alert)."""
    for node in run.node_results:
        if node["resource_type"] != "test" or node["status"] not in ("pass", "warn", "fail", "error"):
            continue
        name = str(node["unique_id"]).split(".")[2]
        subject = f"test:{name}"
        evaluation.evaluated.add(("warned_test", subject))
        if node["status"] == "warn":
            failures = int(node.get("failures") or 0)  # type: ignore[call-overload]
            evaluation.firing.append(
                Alert(
                    "warned_test",
                    subject,
                    float(failures),
                    0.0,
                    f"dbt test {name} warned: {failures:,} failing row{'s' if failures != 1 else ''}",
                )
            )


def evaluate(
    connection: duckdb.DuckDBPyConnection, run: RunRecord, now: dt.datetime, limits: Thresholds = DEFAULT_LIMITS
) -> Evaluation:
    """Which alert rules fire after `run` (already in the run log), and which rule/subjects were checked."""
    evaluation = Evaluation([], set())
    if run.status == "success":
        if run.command in ROW_COMMANDS:
            row_alerts(connection, run, limits, evaluation)
        slow_alerts(connection, run, limits, evaluation)
    warned_test_alerts(run, evaluation)
    error_alerts(connection, now, limits, evaluation)
    return evaluation


def open_alerts(connection: duckdb.DuckDBPyConnection) -> list[Alert]:
    rows = connection.sql(
        "select rule, subject, value, baseline, message, opened_at, opened_by_run from monitoring.alerts "
        "where status = 'open' order by opened_at, rule, subject"
    ).fetchall()
    return [Alert(*row) for row in rows]


def record(
    connection: duckdb.DuckDBPyConnection, run: RunRecord, evaluation: Evaluation, now: dt.datetime
) -> tuple[list[Alert], list[Alert]]:
    """Open new alerts, refresh open ones, resolve the evaluated ones that no longer fire.

    Returns (open alerts after this run, alerts this run resolved).
    """
    before = {alert.key: alert for alert in open_alerts(connection)}
    firing = {alert.key: alert for alert in evaluation.firing}
    for key, alert in firing.items():
        if key in before:
            connection.execute(
                "update monitoring.alerts set last_seen_at = ?, last_seen_run = ?, value = ?, baseline = ?, "
                "message = ? where status = 'open' and rule = ? and subject = ?",
                [now, run.run_id, alert.value, alert.baseline, alert.message, *key],
            )
        else:
            connection.execute(
                "insert into monitoring.alerts values (?, ?, ?, 'open', ?, ?, ?, ?, null, null, ?, ?, ?)",
                [
                    uuid.uuid4().hex[:16],
                    *key,
                    now,
                    run.run_id,
                    now,
                    run.run_id,
                    alert.value,
                    alert.baseline,
                    alert.message,
                ],
            )
    resolved = [alert for key, alert in before.items() if key in evaluation.evaluated and key not in firing]
    for alert in resolved:
        connection.execute(
            "update monitoring.alerts set status = 'resolved', resolved_at = ?, resolved_by_run = ? "
            "where status = 'open' and rule = ? and subject = ?",
            [now, run.run_id, *alert.key],
        )
    return open_alerts(connection), resolved


def log_alerts(open_now: list[Alert], resolved: list[Alert]) -> None:
    for alert in resolved:
        log(f"resolved [{alert.rule}] {alert.subject}: no longer firing")
    for alert in open_now:
        log(alert.line())
