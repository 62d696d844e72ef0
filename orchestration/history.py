"""The runs as `pipeline status`, the report and the metrics show them, read from the Dagster
instance (run records, step stats, materializations, check evaluations), and the load lineage:

    a dlt load id (the `load_ids` metadata of the raw assets) -> the Dagster run that loaded it ->
    the dbt invocation that built on it (dbt's run_results.json of the first successful dbt step at
    or after that run: target/dbt_models-<run id[:7]>-*/)
"""

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance

from orchestration.monitoring import ALERTS_TAG, GOLD_ROWS_CHECK, NOT_DATA, ROWS_LOADED_CHECK, utc, value
from pipeline.warehouse.dbt_runner import step_run_results


@dataclass
class RunInfo:
    """One Dagster run as the status, report and metrics show it."""

    run_id: str
    job: str
    partition: str
    status: str  # SUCCESS, FAILURE, STARTED, ...
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    seconds: float
    message: str = ""
    steps: dict[str, tuple[str, float]] = field(default_factory=dict)  # step -> (status, seconds)
    rows_loaded: dict[str, int] = field(default_factory=dict)  # source -> rows
    load_ids: dict[str, list[str]] = field(default_factory=dict)  # source -> dlt load ids
    tests: dict[str, int] = field(default_factory=dict)  # dbt test status (pass, warn, fail) -> count
    failing_tests: list[tuple[str, str, str, int]] = field(default_factory=list)  # (test, asset, status, rows)
    gold_rows: dict[str, int] = field(default_factory=dict)
    alerts: str = ""

    @property
    def total_rows_loaded(self) -> int | None:
        return sum(self.rows_loaded.values()) if self.rows_loaded else None

    @property
    def built(self) -> bool:
        return self.steps.get("dbt_models", ("", 0.0))[0] == "success"


def failure_message(events: list) -> str:
    for event in events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            failure = event.step_failure_data
            described = failure.user_failure_data.description if failure.user_failure_data else None
            text = described or (failure.error.message if failure.error else "")
            return f"{event.step_key}: {text.strip()}"
    for event in events:
        if event.event_type == DagsterEventType.RUN_FAILURE:
            return event.message or ""
    return ""


def run_info(instance: DagsterInstance, record: Any) -> RunInfo:  # noqa: ANN401 (a RunRecord)
    run = record.dagster_run
    started, ended = record.start_time, record.end_time
    info = RunInfo(
        run_id=run.run_id,
        job=run.job_name,
        partition=run.tags.get("dagster/partition", ""),
        status=run.status.value,
        started_at=utc(started) or record.create_timestamp.replace(tzinfo=None),
        ended_at=utc(ended),
        seconds=((ended or dt.datetime.now(dt.UTC).timestamp()) - started) if started else 0.0,
        alerts=run.tags.get(ALERTS_TAG, ""),
    )
    for step in instance.get_run_step_stats(run.run_id):
        took = (step.end_time or step.start_time or 0) - (step.start_time or 0)
        info.steps[step.step_key] = ((step.status.value.lower() if step.status else "not run"), took)
    kinds = {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_CHECK_EVALUATION,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.RUN_FAILURE,
    }
    events = [entry.dagster_event for entry in instance.all_logs(run.run_id, of_type=kinds) if entry.dagster_event]
    for event in events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.materialization.metadata
            source, table = event.asset_key.path[0], event.asset_key.path[-1]
            if "rows_loaded" in metadata and table not in NOT_DATA:
                info.rows_loaded[source] = info.rows_loaded.get(source, 0) + int(value(metadata, "rows_loaded"))
            if value(metadata, "load_ids"):
                info.load_ids[source] = [i for i in str(value(metadata, "load_ids")).split(", ") if i]
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.asset_check_evaluation_data
            if check.check_name == GOLD_ROWS_CHECK:
                info.gold_rows[check.asset_key.path[-1]] = int(value(check.metadata, "rows"))
            elif check.check_name != ROWS_LOADED_CHECK:
                warned = check.severity == AssetCheckSeverity.WARN
                status = "pass" if check.passed else "warn" if warned else "fail"
                info.tests[status] = info.tests.get(status, 0) + 1
                if status != "pass":
                    rows = int(value(check.metadata, "dagster_dbt/failed_row_count") or 0)
                    info.failing_tests.append((check.check_name, check.asset_key.to_user_string(), status, rows))
    info.message = failure_message(events) if info.status == "FAILURE" else ""
    return info


def recent_runs(instance: DagsterInstance, limit: int = 10) -> list[RunInfo]:
    """The latest runs, newest first."""
    return [run_info(instance, record) for record in instance.get_run_records(limit=limit)]


def dbt_invocation(run_id: str) -> str | None:
    """The invocation id of the run's last `dbt build`, None without one."""
    documents = step_run_results(run_id)
    return documents[0]["metadata"]["invocation_id"] if documents else None


@dataclass
class LoadLineage:
    source: str
    load_id: str
    run_id: str
    partition: str
    run_status: str
    built_by_run: str | None  # the first run at or after it whose dbt step succeeded
    dbt_invocation_id: str | None


def load_lineage(runs: list[RunInfo]) -> list[LoadLineage]:
    """Each dlt load of `runs` (newest first, as recent_runs gives them) -> its run -> the build on it."""
    lineage = []
    ordered = list(reversed(runs))  # oldest first
    for index, run in enumerate(ordered):
        builder = next((later for later in ordered[index:] if later.built), None)
        for source, load_ids in sorted(run.load_ids.items()):
            for load_id in load_ids:
                lineage.append(
                    LoadLineage(
                        source,
                        load_id,
                        run.run_id,
                        run.partition,
                        run.status,
                        builder.run_id if builder else None,
                        dbt_invocation(builder.run_id) if builder else None,
                    )
                )
    return lineage[::-1]
