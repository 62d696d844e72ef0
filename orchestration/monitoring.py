"""Alerts and run history read from what Dagster and dbt record (no bookkeeping of our own).

Where each rule of pipeline/reporting/alerts.py is evaluated and where Dagster's UI shows it:

    row_drop     asset checks inside the run: `rows_loaded_drop` on each raw table `[source, table]`
                 (after its extract step; history: the `rows_loaded` metadata of the table's earlier
                 materializations) and `row_count_drop` on each gold table (after the dbt step, on
                 DuckDB; history: the rows its earlier evaluations counted). Severity WARN: the
                 check shows as warned on the asset, the run still succeeds.
    warned_test  dbt's own asset checks (dagster-dbt): a warn test that found rows.
    slow_step,   after the run (`after_run`: `pipeline run` calls it, and the run status sensors
    error_rate   below do under the daemon): from the run records and step stats. A run that fires
                 one is tagged `ml_features/alerts` (the rules) and `ml_features/alert.<rule>.<subject>`
                 (the message): the Runs page shows the tags and filters on them.

An alert is open while the latest evaluation of its rule and subject fires (`open_alerts`): the
latest evaluation of each check, the latest successful run of each step, the runs of the last 24 h.

The runs as status, report and metrics show them, and the load lineage: orchestration/history.py.
"""

import datetime as dt
import statistics
from collections.abc import Iterator
from typing import Any

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunsFilter,
    RunStatusSensorContext,
    SkipReason,
    multi_asset_check,
    run_failure_sensor,
    run_status_sensor,
)

from extract.files import REJECTED_FILES_TABLE
from extract.load import duckdb_path
from orchestration.settings import on_duckdb
from pipeline.console import log
from pipeline.reporting.alerts import DEFAULT_LIMITS, Alert, Thresholds, error_rate, row_drop, slow_step, warned_test
from pipeline.warehouse.connections import connect

ROWS_LOADED_CHECK = "rows_loaded_drop"
GOLD_ROWS_CHECK = "row_count_drop"
OUR_CHECKS = (ROWS_LOADED_CHECK, GOLD_ROWS_CHECK)
NOT_DATA = ("_dlt_loads", REJECTED_FILES_TABLE)  # dlt's bookkeeping, files it could not read
ALERTS_TAG = "ml_features/alerts"
ALERT_TAG = "ml_features/alert."
MATERIALIZATIONS_READ = 200  # a table's history read for its baseline (the first load is left out when in it)
RUNS_READ = 30  # runs read for the steps' usual times and for the checks' latest state
FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]


def value(metadata: dict, name: str) -> Any:  # noqa: ANN401 (a metadata value of any type)
    entry = metadata.get(name)
    return getattr(entry, "value", entry)


def utc(timestamp: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).replace(tzinfo=None) if timestamp else None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# ---- row drops: asset checks inside the run -------------------------------------------------------


def rows_loaded_history(instance: DagsterInstance, key: AssetKey, run_id: str) -> tuple[int | None, list[float]]:
    """(rows this run loaded into the table, rows the earlier loads that brought any loaded, newest
    first): from the `rows_loaded` metadata of its materializations; the table's first load with
    rows (the initial backfill) is no baseline."""
    records = instance.fetch_materializations(key, limit=MATERIALIZATIONS_READ).records
    current, earlier = None, []
    for record in records:
        rows = value(record.asset_materialization.metadata, "rows_loaded") if record.asset_materialization else None
        if record.run_id == run_id:
            current = rows if current is None else current
        elif rows:
            earlier.append(float(rows))
    if len(records) < MATERIALIZATIONS_READ and earlier:
        earlier.pop()  # the oldest load with rows is the first one
    return current, earlier


def drop_result(
    key: AssetKey, check: str, label: str, rows: int, history: list[float], limits: Thresholds
) -> AssetCheckResult:
    needed = limits.min_baseline_runs
    metadata: dict[str, Any] = {"rows": rows, "baseline_runs": len(history[: limits.baseline_runs])}
    if len(history) < needed:
        description = f"no baseline yet: {len(history)} of the {needed} earlier loads a trailing average needs"
        return AssetCheckResult(
            asset_key=key, check_name=check, passed=True, description=description, metadata=metadata
        )
    alert = row_drop(f"{check}:{key.to_user_string()}", label, float(rows), history, limits)
    average = statistics.fmean(history[: limits.baseline_runs])
    metadata["trailing_average"] = round(average, 1)
    if alert:
        return AssetCheckResult(
            asset_key=key,
            check_name=check,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=alert.message,
            metadata=metadata,
        )
    description = f"{rows:,} rows against the trailing average {average:,.0f}"
    return AssetCheckResult(asset_key=key, check_name=check, passed=True, description=description, metadata=metadata)


def rows_loaded_check(source: str, tables: list[str], limits: Thresholds = DEFAULT_LIMITS):  # noqa: ANN201
    """One check step per source: `rows_loaded_drop` on each of its raw tables."""
    specs = [
        AssetCheckSpec(
            ROWS_LOADED_CHECK,
            asset=AssetKey([source, table]),
            description="Rows dlt loaded dropped more than 20% against the average of the previous loads (at least 3)",
        )
        for table in sorted(tables)
        if table not in NOT_DATA
    ]

    # a load that brought nothing is not evaluated (the check shows as skipped, an open alert stays
    # open): the source's freshness tells whether nothing is late
    @multi_asset_check(name=f"rows_loaded_{source}", specs=specs, can_subset=True)
    def rows_loaded(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        for spec in specs:
            if spec.key not in context.selected_asset_check_keys:
                continue
            rows, history = rows_loaded_history(context.instance, spec.asset_key, context.run.run_id)
            if rows:
                label = f"rows loaded into {source}.{spec.asset_key.path[-1]}"
                yield drop_result(spec.asset_key, ROWS_LOADED_CHECK, label, rows, history, limits)

    return rows_loaded


def gold_tables(manifest: dict[str, Any]) -> dict[str, str]:
    """{model name: relation} of the gold (marts) tables and the published gold views (training_set,
    fct_transaction_features: counting one runs its joins); other views are not
    counted (the realtime view computes its speed layer)."""
    return {
        node["name"]: node["relation_name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
        and node["fqn"][1:2] == ["marts"]
        and (node["config"].get("materialized") != "view" or node["config"].get("meta", {}).get("publish"))
    }


def check_history(instance: DagsterInstance, key: AssetCheckKey, run_id: str, name: str) -> list[float]:
    """The metadata `name` of the check's earlier completed evaluations, newest first."""
    found = []
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=MATERIALIZATIONS_READ):
        if record.run_id == run_id or record.event is None or record.event.dagster_event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        rows = value(getattr(evaluation, "metadata", {}) or {}, name)
        if isinstance(rows, int | float) and rows >= 0:
            found.append(float(rows))
    return found


def gold_rows_check(tables: dict[str, AssetKey], relations: dict[str, str], limits: Thresholds = DEFAULT_LIMITS):  # noqa: ANN201
    """`row_count_drop` on each gold table, counted in the warehouse after the dbt step (DuckDB)."""
    specs = [
        AssetCheckSpec(
            GOLD_ROWS_CHECK,
            asset=key,
            description="Rows in the table after the build dropped more than 20% against the previous builds",
        )
        for key in tables.values()
    ]

    @multi_asset_check(name="gold_row_counts", specs=specs)
    def gold_row_counts(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        with connect(duckdb_path(), read_only=True) as connection:
            counts = {name: count_rows(connection, relations[name]) for name in tables}
        for name, key in tables.items():
            rows = counts[name]
            history = check_history(context.instance, AssetCheckKey(key, GOLD_ROWS_CHECK), context.run.run_id, "rows")
            if rows is None:
                yield AssetCheckResult(
                    asset_key=key,
                    check_name=GOLD_ROWS_CHECK,
                    passed=False,
                    severity=AssetCheckSeverity.WARN,
                    description=f"{relations[name]} could not be counted after the build",
                )
            else:
                yield drop_result(key, GOLD_ROWS_CHECK, f"rows in {name}", rows, history, limits)

    return gold_row_counts


def count_rows(connection: duckdb.DuckDBPyConnection, relation: str) -> int | None:
    try:
        [(rows,)] = connection.sql(f"select count(*) from {relation}").fetchall()
    except duckdb.Error:
        return None
    return int(rows)


def monitoring_checks(manifest: dict[str, Any], dbt_assets: object) -> list:
    """The row-drop checks of the graph: per source on its raw tables, and on the gold tables
    (DuckDB only: on BigQuery they would count in BigQuery)."""
    from dagster_dbt import get_asset_key_for_model

    from orchestration.extract_assets import source_tables

    checks = [rows_loaded_check(source, tables) for source, tables in source_tables(manifest).items() if tables]
    if on_duckdb():
        relations = gold_tables(manifest)
        keys = {name: get_asset_key_for_model([dbt_assets], name) for name in relations}
        checks.append(gold_rows_check(keys, relations))
    return checks


# ---- slow steps and the error rate: after the run -------------------------------------------------


def step_seconds(instance: DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds each step that succeeded in the run took (retries included)."""
    return {
        step.step_key: step.end_time - step.start_time
        for step in instance.get_run_step_stats(run_id)
        if step.status is not None and step.status.value == "SUCCESS" and step.start_time and step.end_time
    }


def usual_seconds(instance: DagsterInstance, before: dt.datetime) -> dict[str, list[float]]:
    """Per step, the seconds it took in the successful runs created before `before`, newest first."""
    history: dict[str, list[float]] = {}
    runs = instance.get_run_records(
        RunsFilter(statuses=[DagsterRunStatus.SUCCESS], created_before=before), limit=RUNS_READ
    )
    for record in runs:
        for step, took in step_seconds(instance, record.dagster_run.run_id).items():
            history.setdefault(step, []).append(took)
    return history


def runs_failed(instance: DagsterInstance, now: dt.datetime, limits: Thresholds) -> tuple[int, int]:
    """(failed, finished) runs created in the error window before `now`."""
    since = (now - limits.error_window).replace(tzinfo=dt.UTC)
    finished = instance.get_runs_count(RunsFilter(statuses=FINISHED, created_after=since))
    failed = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.FAILURE], created_after=since))
    return failed, finished


def run_alerts(instance: DagsterInstance, run_id: str, now: dt.datetime, limits: Thresholds) -> list[Alert]:
    """The slow steps of a successful run and the error rate as the run ends."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return []
    alerts = []
    if record.dagster_run.status == DagsterRunStatus.SUCCESS:
        history = usual_seconds(instance, record.create_timestamp)
        for step, took in step_seconds(instance, run_id).items():
            alerts.append(slow_step(step, took, history.get(step, []), limits))
    alerts.append(error_rate(*runs_failed(instance, now, limits), limits))
    when = utc(record.end_time) or now
    found = [alert for alert in alerts if alert]
    for alert in found:
        alert.run_id, alert.at = run_id, when
    return found


def tag_run(instance: DagsterInstance, run_id: str, alerts: list[Alert]) -> None:
    """Record the run-level alerts on the run, where the UI's Runs page shows them."""
    tags = {ALERTS_TAG: ", ".join(sorted({alert.rule for alert in alerts})) or "none"}
    tags |= {f"{ALERT_TAG}{alert.rule}.{alert.subject}"[:63]: alert.message for alert in alerts}
    instance.add_run_tags(run_id, tags)


# ---- the state: open alerts -----------------------------------------------------------------------


def latest_check_evaluations(instance: DagsterInstance, runs: int = RUNS_READ) -> dict[AssetCheckKey, Any]:
    """{check: (its latest evaluation, run id, event log entry)} over the checks the last `runs` runs
    evaluated (a check skipped in a run keeps its earlier evaluation)."""
    latest: dict[AssetCheckKey, Any] = {}
    for record in instance.get_run_records(limit=runs):
        run_id = record.dagster_run.run_id
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)[::-1]:
            evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
            if evaluation is not None:
                latest.setdefault(
                    AssetCheckKey(evaluation.asset_key, evaluation.check_name), (evaluation, run_id, entry)
                )
    return latest


def check_alerts(instance: DagsterInstance) -> list[Alert]:
    """Row drops and warned dbt tests whose latest evaluation fired."""
    alerts = []
    for key, (evaluation, run_id, entry) in sorted(latest_check_evaluations(instance).items(), key=lambda i: str(i[0])):
        if evaluation.passed or evaluation.severity != AssetCheckSeverity.WARN:
            continue
        asset = key.asset_key.to_user_string()
        if key.name in OUR_CHECKS:
            rows = value(evaluation.metadata, "rows")
            baseline = value(evaluation.metadata, "trailing_average") or 0.0
            alert = Alert("row_drop", f"{key.name}:{asset}", float(rows), float(baseline), evaluation.description or "")
        else:
            failures = value(evaluation.metadata, "dagster_dbt/failed_row_count") or 0
            alert = warned_test(key.name, asset, int(failures))
        alert.run_id, alert.at = run_id, utc(entry.timestamp)
        alerts.append(alert)
    return alerts


def slow_step_alerts(instance: DagsterInstance, limits: Thresholds) -> list[Alert]:
    """Each step's latest successful run against the successful runs before it."""
    per_step: dict[str, list[tuple[str, float, float | None]]] = {}
    for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]), limit=RUNS_READ):
        run_id = record.dagster_run.run_id
        for step, took in step_seconds(instance, run_id).items():
            per_step.setdefault(step, []).append((run_id, took, record.end_time))
    alerts = []
    for step, runs in sorted(per_step.items()):
        (run_id, took, ended), earlier = runs[0], [seconds for _, seconds, _ in runs[1:]]
        alert = slow_step(step, took, earlier, limits)
        if alert:
            alert.run_id, alert.at = run_id, utc(ended)
            alerts.append(alert)
    return alerts


def open_alerts(
    instance: DagsterInstance, now: dt.datetime | None = None, limits: Thresholds = DEFAULT_LIMITS
) -> list[Alert]:
    """Every alert whose latest evaluation fires."""
    now = now or utc_now()
    alerts = check_alerts(instance) + slow_step_alerts(instance, limits)
    rate = error_rate(*runs_failed(instance, now, limits), limits)
    return alerts + ([rate] if rate else [])


def after_run(instance: DagsterInstance, run_id: str, report: bool = True) -> list[Alert]:
    """What follows every run (`pipeline run` in process; the run status sensors under the daemon):
    the run-level rules evaluated and tagged on the run, every open alert logged, the metrics file
    and (unless `report` is False) the HTML report regenerated. Returns the open alerts."""
    from pipeline.reporting.metrics import write_metrics
    from pipeline.reporting.report import write_report

    now = utc_now()
    tag_run(instance, run_id, run_alerts(instance, run_id, now, DEFAULT_LIMITS))
    alerts = open_alerts(instance, now)
    for alert in alerts:
        log(alert.line())
    try:
        write_metrics(instance, alerts, now)
        if report:
            write_report(instance)
    except (OSError, duckdb.Error) as error:  # a full disk, a folder that cannot be written: the run stands
        log(f"[monitoring] metrics or report not written: {error}")
    return alerts


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    name="alerts_after_success",
    default_status=DefaultSensorStatus.RUNNING,
    description="After a run succeeds: slow steps and the error rate, tagged on the run; metrics and report.",
)
def alerts_after_success(context: RunStatusSensorContext) -> SkipReason:
    alerts = after_run(context.instance, context.dagster_run.run_id)
    return SkipReason(f"{len(alerts)} open alert(s)" + "".join(f"\n{alert.line()}" for alert in alerts))


@run_failure_sensor(
    name="alerts_after_failure",
    default_status=DefaultSensorStatus.RUNNING,
    description="After a run fails: the error rate, tagged on the run; metrics and report.",
)
def alerts_after_failure(context: RunFailureSensorContext) -> SkipReason:
    alerts = after_run(context.instance, context.dagster_run.run_id)
    return SkipReason(f"{len(alerts)} open alert(s)" + "".join(f"\n{alert.line()}" for alert in alerts))


SENSORS = [alerts_after_success, alerts_after_failure]
