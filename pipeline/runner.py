"""One pipeline run: the stages in order, then the run log, alerts, metrics, report and a summary.

Exit codes: 0 success or nothing to do, 1 failed, 3 succeeded but alerts are open and `--strict`.
"""

import datetime as dt
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from extract.load import duckdb_path
from pipeline.alerts import Alert, evaluate, log_alerts, record
from pipeline.console import first_line, log, seconds
from pipeline.metrics import render, write_metrics
from pipeline.monitoring import Freshness, source_freshness
from pipeline.published import published_path, refresh_published
from pipeline.report import write_report
from pipeline.retry import GaveUp, RetryPolicy
from pipeline.run_journal import RunJournal, forget_runs, record_dead_runs, started_record
from pipeline.run_log import RunRecord, ensure_schema, insert_run, utc_now, write_run
from pipeline.run_summary import quarantine_lines, warned_lines, warned_tests
from pipeline.stages import (
    RunOptions,
    StageFailed,
    build_stage,
    export_stage,
    extract_stage,
    nothing_new,
    run_stage,
    train_stage,
    unwritable,
)
from pipeline.warehouse import WarehouseLocked, connect

EXIT_OK, EXIT_FAILED, EXIT_ALERTS = 0, 1, 3


@dataclass
class RunOutcome:
    run: RunRecord
    alerts: list[Alert] = field(default_factory=list)
    exit_code: int = EXIT_OK
    report: Path | None = None
    metrics: Path | None = None


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def prepare_warehouse(run: RunRecord, policy: RetryPolicy) -> None:
    """Wait for the warehouse lock (with retries), create the monitoring schema, record the runs
    that were killed since (pipeline/run_journal.py) and this run as `running`."""
    with connect(duckdb_path(), policy=policy, prefix="[run] ") as connection:
        connection.begin()
        ensure_schema(connection)
        try:
            killed = record_dead_runs(connection, run.run_id)
        except duckdb.Error as error:  # never let the record of an old run stop a new one
            connection.rollback()
            log(f"[run] killed runs not recorded this time: {first_line(str(error))}")
            killed = []
            connection.begin()
            ensure_schema(connection)
        insert_run(connection, started_record(run))
        connection.commit()
    forget_runs(killed)
    for earlier in killed:
        log(f"[run] recorded run {earlier.run_id} (started {earlier.started_at:%Y-%m-%d %H:%M:%S}) as killed")
    catch_up_published(policy)


def catch_up_published(policy: RetryPolicy) -> None:
    """A run killed after dbt published, or a `dbt build` run by hand, left the published file behind."""
    try:
        publication = refresh_published(duckdb_path(), policy)
    except OSError as error:
        raise StageFailed(f"publishing {published_path()} failed: {unwritable(error)}") from error
    if publication:
        log(f"[run] published file {published_path()} brought up to invocation {publication.invocation_id}")


def run_stages(run: RunRecord, options: RunOptions, policy: RetryPolicy, journal: RunJournal) -> None:
    if options.on_duckdb:
        prepare_warehouse(run, policy)
    if not options.skip_extract:
        run_stage(run, "extract", extract_stage(run, options, policy, journal), journal)
        reason = nothing_new(run, options, policy)
        if reason:
            run.status, run.message = "skipped", reason
            return
    if not options.skip_build:
        run_stage(run, "build", build_stage(run, options, policy, journal), journal)
    if options.on_duckdb and not options.skip_export:
        run_stage(run, "export", export_stage(run, options, policy), journal)
    if options.on_duckdb and not options.skip_train:
        run_stage(run, "train", train_stage(options, policy), journal)
    run.status = "success"


def execute_run(options: RunOptions, policy: RetryPolicy | None = None) -> RunOutcome:
    """Run the stages `options` asks for, record the run and say how it went."""
    policy = policy or RetryPolicy.from_env()
    run = RunRecord(command=options.command, target=options.target, run_date=options.run_date or utc_today())
    journal = RunJournal(run)
    locked = False
    log(f"[run] {run.command} {run.run_id}: target {run.target}, run_date {run.run_date}")
    try:
        journal.start()
        run_stages(run, options, policy, journal)
    except (StageFailed, GaveUp) as error:
        run.status, run.message = "failed", str(error)
    except WarehouseLocked as error:
        run.status, run.message, locked = "failed", str(error), True
    except KeyboardInterrupt:
        run.status, run.message = "failed", "interrupted (Ctrl-C); run it again: every stage is idempotent"
    except OSError as error:  # the data folder cannot be written (read-only, a file in its place, a full disk)
        run.status, run.message = "failed", f"{failed_stage(run)} failed: {unwritable(error)}"
    except Exception as error:  # a bug: the run is still recorded, with the traceback for the report
        traceback.print_exc()
        run.status, run.message = "failed", f"{failed_stage(run)} failed unexpectedly: {type(error).__name__}: {error}"
    finally:
        run.ended_at = utc_now()
    try:
        return finish(run, options, RetryPolicy(attempts=1) if locked else policy)
    finally:
        journal.close()


def failed_stage(run: RunRecord) -> str:
    return run.stages[-1].stage if run.stages else "the run"


def monitor(
    run: RunRecord, options: RunOptions, policy: RetryPolicy, outcome: RunOutcome, new_alerts_only: bool = False
) -> None:
    """Record the run, evaluate alerts, write the metrics file and the report.

    Every open alert is logged, or with `new_alerts_only` (a stream's batches) only those this run opened.
    """
    now = utc_now()
    freshness: list[Freshness] = []
    resolved: list[Alert] = []
    metrics_text = None
    if options.on_duckdb and record_run(run, policy):
        try:
            with connect(duckdb_path(), policy=policy, prefix="[monitoring] ") as connection:
                outcome.alerts, resolved = record(connection, run, evaluate(connection, run, now), now)
                freshness = source_freshness(connection, now)
                metrics_text = render(run, connection, freshness, outcome.alerts, now)
        except WarehouseLocked as error:
            log(f"[monitoring] alerts not evaluated: {error}")
        if options.report:
            outcome.report = write_report(duckdb_path(), policy)
    try:
        outcome.metrics = write_metrics(metrics_text or render(run, None, freshness, outcome.alerts, now))
    except OSError as error:
        log(f"[monitoring] metrics not written: {unwritable(error)}")
    shown = [alert for alert in outcome.alerts if alert.opened_by_run == run.run_id] if new_alerts_only else None
    log_alerts(outcome.alerts if shown is None else shown, resolved)


def record_run(run: RunRecord, policy: RetryPolicy) -> bool:
    """Write the run to the run log; False (said in one line) when the warehouse cannot be written."""
    try:
        return write_run(duckdb_path(), run, policy)
    except (OSError, duckdb.Error) as error:
        log(f"[monitoring] the run could not be recorded: {first_line(str(error))}")
        return False


def finish(run: RunRecord, options: RunOptions, policy: RetryPolicy) -> RunOutcome:
    outcome = RunOutcome(run)
    print_summary(run)
    monitor(run, options, policy, outcome)
    outputs = ([f"metrics {outcome.metrics}"] if outcome.metrics else []) + (
        [f"report {outcome.report}"] if outcome.report else []
    )
    if outputs:
        log(f"  {'; '.join(outputs)}")
    if run.status == "failed":
        outcome.exit_code = EXIT_FAILED
    elif options.strict and outcome.alerts:
        log(f"--strict: {len(outcome.alerts)} open alert(s): exit {EXIT_ALERTS}")
        outcome.exit_code = EXIT_ALERTS
    return outcome


def stage_note(run: RunRecord, name: str) -> str:
    stage = run.stage(name)
    if stage is None:
        return ""
    detail = stage.detail
    if name == "extract":
        by_source: dict[str, int] = {}
        for source, _, rows in run.source_rows:
            by_source[source] = by_source.get(source, 0) + rows
        return ", ".join(f"{source} {rows:,}" for source, rows in by_source.items())
    if name == "build" and "models" in detail:
        done = f"{detail['nodes_done']} of {detail['nodes_total']} nodes, " if stage.status != "success" else ""
        published = ", published" if detail.get("published") else ", not published" if stage.status != "success" else ""
        return (
            f"{done}{detail['models']} models, tests {detail['tests_passed']} passed, {detail['tests_warned']} warned, "
            f"{detail['tests_failed']} failed{published}"
        )
    if name == "export" and "version" in detail:
        return f"version {detail['version']}{' (reused)' if detail.get('reused') else ''}"
    if stage.status == "skipped" and detail.get("reason"):
        return first_line(str(detail["reason"]), 160)
    if name == "train" and "roc_auc" in detail:
        return f"validation ROC AUC {float(detail['roc_auc']):.3f}, PR AUC {float(detail['pr_auc']):.3f}"  # type: ignore[arg-type]
    return ""


def print_summary(run: RunRecord) -> None:
    log(
        f"\n==== {run.command} {run.run_id}  target {run.target}  run_date {run.run_date}: {run.status.upper()} "
        f"in {seconds(run.seconds)} ===="
    )
    for stage in run.stages:
        log(
            f"  {stage.stage:<8} {stage.status:<8} {seconds(stage.seconds):>10}  rows in {stage.rows_in:>10,}  "
            f"out {stage.rows_out:>10,}  {stage_note(run, stage.stage)}"
        )
    build = run.stage("build")
    if build:
        for line in quarantine_lines(build.detail.get("quarantine", []), bool(build.detail.get("quarantine_stale"))):  # type: ignore[arg-type]
            log(line)
    warned = build.detail.get("warned_tests") if build else None
    for line in warned_lines(warned if isinstance(warned, list) else warned_tests(run.node_results)):
        log(line)
    if run.dbt_invocation_id:
        log(
            f"  dbt invocation {run.dbt_invocation_id}; this run's dlt loads: {len(run.loads)} "
            "(monitoring.load_lineage links them)"
        )
    if run.message:
        log(run.message)
