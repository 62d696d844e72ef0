"""The alert rules, over numbers read from what Dagster and dbt recorded (orchestration/monitoring.py
reads them and records the outcome where Dagster's UI shows it).

    row_drop    rows dropped more than 20% against the trailing average of the previous loads or
                builds (at most 7, at least 3): the rows dlt loaded into each raw table (the
                `rows_loaded_drop` asset check on `[source, table]`, after the extract step) and the
                rows of each gold table after the build (`row_count_drop` on the marts). A table's
                first load (the initial backfill) is not part of its baseline, and a run where a
                source delivered nothing is left to freshness: FX has no weekend rates and chargeback
                files arrive weekly.
    slow_step   a step took over twice its usual (median) time over the previous successful runs
                that ran it, and at least 5 s longer (sub-second steps jitter).
    error_rate  over 1% of the finished runs of the last 24 hours failed.
    warned_test a dbt test of severity warn found failing rows: dbt's own asset check on the model,
                open until a later build runs the test and it passes.

An alert is open while the latest evaluation of its rule and subject fires; the next evaluation
that does not fire resolves it. Each open alert is one log line starting with ALERT.
"""

import datetime as dt
import statistics
from dataclasses import dataclass

from pipeline.console import seconds

RULES = ("row_drop", "slow_step", "error_rate", "warned_test")


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
    run_id: str = ""  # the run whose evaluation fired
    at: dt.datetime | None = None  # when (UTC)

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.subject

    def line(self) -> str:
        seen = f" (run {self.run_id[:8]}, {self.at:%Y-%m-%d %H:%M} UTC)" if self.run_id and self.at else ""
        return f"ALERT [{self.rule}] {self.message}{seen}"


def row_drop(subject: str, label: str, value: float, history: list[float], limits: Thresholds) -> Alert | None:
    """`value` more than `limits.row_drop` below the average of `history` (newest first, at least
    `min_baseline_runs` of them); None when it is not, or there is no baseline yet."""
    history = history[: limits.baseline_runs]
    if len(history) < limits.min_baseline_runs:
        return None
    average = statistics.fmean(history)
    if average <= 0 or value >= (1 - limits.row_drop) * average:
        return None
    return Alert(
        "row_drop",
        subject,
        value,
        average,
        f"{label}: {value:,.0f} rows, {value / average - 1:+.0%} against the average {average:,.0f} of the "
        f"previous {len(history)} (alert below -{limits.row_drop:.0%})",
    )


def slow_step(step: str, took: float, history: list[float], limits: Thresholds) -> Alert | None:
    """`took` seconds over `slow_factor` times the median of `history` (newest first) and at least
    `slow_min_seconds` longer; None otherwise or without a baseline."""
    history = history[: limits.baseline_runs]
    if len(history) < limits.min_baseline_runs:
        return None
    usual = statistics.median(history)
    if took <= limits.slow_factor * usual or took - usual < limits.slow_min_seconds:
        return None
    return Alert(
        "slow_step",
        step,
        took,
        usual,
        f"step {step} took {seconds(took)}, {took / usual:.1f}x its usual {seconds(usual)} (median of the "
        f"previous {len(history)} successful runs; alert above {limits.slow_factor:g}x)",
    )


def error_rate(failed: int, finished: int, limits: Thresholds) -> Alert | None:
    """Over `limits.error_rate` of the `finished` runs of the window failed."""
    if not finished or failed / finished <= limits.error_rate:
        return None
    hours = limits.error_window.total_seconds() / 3600
    return Alert(
        "error_rate",
        "runs",
        failed / finished,
        limits.error_rate,
        f"{failed} of the {finished} runs of the last {hours:g} h failed ({failed / finished:.0%}; "
        f"alert above {limits.error_rate:.0%})",
    )


def warned_test(test: str, asset: str, failures: int) -> Alert:
    return Alert(
        "warned_test",
        f"{asset}:{test}",
        float(failures),
        0.0,
        f"dbt test {test} on {asset} warned: {failures:,} failing row{'s' if failures != 1 else ''}",
    )
