"""The closing summary of a run, read from what Dagster recorded (steps, materializations, asset
checks, failures) and from the warehouse (the quarantine)."""

import datetime as dt

import duckdb
from dagster import DagsterEventType, DagsterInstance
from dagster._core.execution.plan.objects import ErrorSource

from extract.load import duckdb_path
from orchestration.settings import on_duckdb
from pipeline.console import first_line, log, seconds
from pipeline.reporting.run_summary import quarantine_by_table, quarantine_lines, warned_lines, warned_tests
from pipeline.warehouse.connections import WarehouseLocked, connect
from pipeline.warehouse.dbt_runner import DbtSummary, step_run_results, summarise


def value(metadata: dict, name: str) -> object:
    entry = metadata.get(name)
    return getattr(entry, "value", entry)


def dbt_results(run_id: str) -> DbtSummary | None:
    """What dbt recorded for the run's last `dbt build` and the tests run after its publish (the
    invocation id is the build's), None when it wrote nothing."""
    documents = step_run_results(run_id)
    if not documents:
        return None
    summary = DbtSummary(success=True)
    for document in documents:
        summarise(document, summary)
    return summary


def step_note(step: str, events: list, run_id: str) -> str:
    """What a step produced, from its events."""
    materialized = [event for event in events if event.event_type == DagsterEventType.ASSET_MATERIALIZATION]
    observed = [event for event in events if event.event_type == DagsterEventType.ASSET_OBSERVATION]
    if step.startswith("extract_"):
        rows = {
            event.asset_key.path[-1]: value(event.materialization.metadata, "rows_loaded")
            for event in materialized
            if event.asset_key.path[-1] != "_dlt_loads"
        }
        return ", ".join(f"{table} {count:,}" for table, count in sorted(rows.items()))
    if step == "dbt_models":
        dbt = dbt_results(run_id)
        if dbt is None:
            return f"{len(materialized)} models, seeds and snapshots built"
        return (
            f"{dbt.count('model', 'success')} models, tests {dbt.count('test', 'pass')} passed, "
            f"{dbt.count('test', 'warn')} warned, {dbt.count('test', 'fail', 'error')} failed, "
            f"{dbt.count('model', 'skipped')} models skipped (dbt invocation {dbt.invocation_id})"
        )
    if step == "training_set_export" and materialized:
        metadata = materialized[0].materialization.metadata
        reused = " (reused)" if value(metadata, "reused") else ""
        return f"version {value(metadata, 'version')}{reused}, {value(metadata, 'dagster/row_count'):,} rows"
    if step == "fraud_model" and materialized:
        metadata = materialized[0].materialization.metadata
        return f"validation ROC AUC {value(metadata, 'roc_auc'):.3f}, PR AUC {value(metadata, 'pr_auc'):.3f}"
    checks = [
        event.asset_check_evaluation_data
        for event in events
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    if step.startswith("rows_loaded_") and not checks:
        return "not evaluated: no rows loaded"
    if checks and not materialized:  # a step of checks only (orchestration/monitoring.py)
        failing = [check for check in checks if not check.passed]
        return f"checks {len(checks) - len(failing)} passed, {len(failing)} warned" + (
            f" ({', '.join(sorted({check.asset_key.to_user_string() for check in failing}))})" if failing else ""
        )
    if observed:
        return f"skipped: {value(observed[0].asset_observation_data.asset_observation.metadata, 'skipped')}"
    return ""


def data_lines(dbt: DbtSummary | None) -> list[str]:
    """The quarantine per source table, and the tests that warned with a row each kept."""
    if not on_duckdb():
        return warned_lines(warned_tests(dbt.node_results)) if dbt else []
    try:
        with connect(duckdb_path(), read_only=True) as connection:
            warned = warned_tests(dbt.node_results, connection) if dbt else []
            return quarantine_lines(quarantine_by_table(connection)) + warned_lines(warned)
    except (duckdb.Error, WarehouseLocked):  # locked: the run's failure says by whom
        return []


def print_summary(instance: DagsterInstance, run_id: str) -> None:
    record = instance.get_run_record_by_id(run_id)
    run = record.dagster_run
    events = [entry.dagster_event for entry in instance.all_logs(run_id) if entry.dagster_event]
    started = record.start_time or record.create_timestamp.timestamp()
    ended = record.end_time or dt.datetime.now(dt.UTC).timestamp()
    status = "SUCCESS" if run.status.value == "SUCCESS" else run.status.value
    log(f"\n==== daily {run.tags.get('dagster/partition')}  run {run_id}: {status} in {seconds(ended - started)} ====")
    for step in instance.get_run_step_stats(run_id):
        step_events = [event for event in events if event.step_key == step.step_key]
        took = (step.end_time or ended) - (step.start_time or started)
        retried = (
            f", {step.attempts - 1} retr{'y' if step.attempts == 2 else 'ies'}" if (step.attempts or 1) > 1 else ""
        )
        state = step.status.value.lower() if step.status else "not run"
        note = step_note(step.step_key, step_events, run_id)
        log(f"  {step.step_key:<24} {state:<8} {seconds(took):>10}  {note}{retried}")
    for line in data_lines(dbt_results(run_id)):
        log(line)
    stopped = next(
        (
            first_line(event.message or "", 200)
            for event in events
            if event.event_type in (DagsterEventType.RUN_CANCELING, DagsterEventType.RUN_CANCELED) and event.message
        ),
        "interrupted",
    )
    for event in events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            failure = event.step_failure_data
            if failure.error_source == ErrorSource.INTERRUPT:  # Ctrl-C or SIGTERM: one line, no traceback
                log(f"{event.step_key} stopped: {stopped} (not retried)")
                continue
            described = failure.user_failure_data.description if failure.user_failure_data else None
            if not described and failure.error and failure.error.cause:  # e.g. "Exceeded max_retries": say of what
                described = f"{failure.error.message.strip()}: {first_line(failure.error.cause.message, 600)}"
            log(f"{event.step_key} failed: {described or (failure.error.message.strip() if failure.error else '')}")
