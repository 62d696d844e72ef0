"""`pipeline run`: the daily job materialized in this process (no daemon, no webserver), recorded
in the Dagster instance like any run, so `make dagster` shows it and a schedule's runs alike.

Exit codes: 0 success, 1 failed, 130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM (128 + the
signal's number, as a shell reports a process the signal ended). Interrupted, the step running stops
(dbt gets SIGINT and cancels its queries, dlt's load stops), is not retried, no step starts after it,
and the run is recorded canceled, "interrupted by SIGTERM" (orchestration/failures.py with_retries).
"""

import contextlib
import datetime as dt
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from extract.load import data_dir
from orchestration.instance import PID_TAG, dagster_home, fail_dead_runs, get_instance
from orchestration.partitions import FIRST_DAY
from pipeline.console import log, pinned_output
from pipeline.processes import STOP_SIGNALS, Stopped, raise_stopped, signals_noted, stop_signals

EXIT_OK, EXIT_FAILED = 0, 1
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class RunOptions:
    day: dt.date
    target: str | None = None
    sources: tuple[str, ...] | None = None
    skip_extract: bool = False
    skip_build: bool = False
    skip_export: bool = False
    skip_train: bool = False
    full_refresh: bool = False


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def selected_assets(options: RunOptions, assets: list) -> list[AssetKey]:  # list of AssetsDefinition
    """The asset keys the options leave in the daily job."""
    keys: list[AssetKey] = []
    for definition in assets:
        name = definition.op.name
        if name.startswith("extract_"):
            wanted = not options.skip_extract and (
                options.sources is None or name[len("extract_") :] in options.sources
            )
        else:
            wanted = not {
                "dbt_models": options.skip_build,
                "training_set_export": options.skip_export,
                "fraud_model": options.skip_train,
            }[name]
        if wanted:
            keys += list(definition.keys)
    return keys


def log_file() -> Path:
    """Where the tools' own output of a `pipeline run` goes (the terminal shows progress and the summary)."""
    folder = data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"run-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{os.getpid()}.log"


def run_day(options: RunOptions) -> int:
    """Materialize the daily job for `options.day` in process; print a summary; the exit code."""
    if options.target:
        os.environ["DBT_TARGET"] = options.target  # read by the definitions' dbt resource and the extract
    if options.day < dt.date.fromisoformat(FIRST_DAY) or options.day > utc_today():
        log(
            f"pipeline run: {options.day} is not a day the pipeline builds: from ML_FEATURES_FIRST_DAY ({FIRST_DAY}) "
            "to today (UTC); for older data set ML_FEATURES_FIRST_DAY=YYYY-MM-DD"
        )
        return EXIT_FAILED
    try:
        home = dagster_home()
        output = log_file()
    except OSError as error:  # the data folder cannot be written (a file in its place, read-only, a full disk)
        log(f"pipeline run failed: cannot write {error.filename or data_dir()}: {error.strerror or error}")
        return EXIT_FAILED
    from orchestration.definitions import ASSETS  # after the settings above are in place

    selection = selected_assets(options, ASSETS)
    if not selection:  # Dagster reads an empty selection as the whole job
        log(
            "pipeline run: nothing to run: every step is skipped "
            "(--skip-extract, --skip-build, --skip-export, --skip-train)"
        )
        return EXIT_FAILED

    previous = {signum: signal.signal(signum, raise_stopped) for signum in STOP_SIGNALS}
    try:
        return materialize(options, home, output, selection)
    except Stopped as stop:  # before the run started, or while it was being summarised
        signum = (stop_signals() or [signal.Signals[str(stop)]])[0]  # the first: the run's, if it was one
        log(f"pipeline run interrupted by {signum.name}: stopped (the run is recorded as far as it got)")
        return 128 + signum.value
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def materialize(options: RunOptions, home: Path, output: Path, selection: list[AssetKey]) -> int:
    """Run the job in process, print its summary; the exit code. SIGINT or SIGTERM raise `Stopped`
    outside the run; during it Dagster takes them and the step running stops (failures.with_retries)."""
    from orchestration.definitions import daily_job, defs
    from orchestration.monitoring import after_run
    from orchestration.summary import print_summary

    instance = get_instance()
    for dead in fail_dead_runs(instance):
        log(f"[run] recorded run {dead} as failed: its process was killed")
    job = defs.resolve_job_def(daily_job.name)
    config = QUIET_LOGS | (
        {"ops": {"dbt_models": {"config": {"full_refresh": True}}}}
        if options.full_refresh and not options.skip_build
        else {}
    )
    run_id = str(uuid.uuid4())  # a Dagster run id
    log(
        f"[run] {run_id}: daily job, partition {options.day}, target {os.environ.get('DBT_TARGET', 'dev')} "
        f"(DAGSTER_HOME {home})"
    )
    log(f"[run] dbt's, dlt's and Dagster's own output: {output}")
    # the tools' output goes to the file, Dagster's log of a failed step too (its stack trace): the
    # terminal gets the pipeline's own lines and the summary, which names each failure's cause
    with (
        output.open("a") as stream,
        pinned_output(),
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
        signals_noted(),
    ):
        result = job.execute_in_process(
            partition_key=options.day.isoformat(),
            run_id=run_id,
            instance=instance,
            run_config=config,
            asset_selection=selection,
            tags={PID_TAG: str(os.getpid())},
            raise_on_error=False,
        )
    stopped_by = stop_signals()
    if stopped_by:
        record_interrupt(instance, run_id, stopped_by[0])
    print_summary(instance, result.run_id)
    after_run(instance, result.run_id)  # slow steps, error rate, open alerts; the metrics file and the report
    if stopped_by:
        log(
            f"pipeline run interrupted by {stopped_by[0].name}: stopped without retrying; "
            "gold is published only by a whole build, the next run goes on from the completed loads"
        )
        return 128 + stopped_by[0].value
    return EXIT_OK if result.success else EXIT_FAILED


def record_interrupt(instance: DagsterInstance, run_id: str, signum: signal.Signals) -> None:
    """The run canceled, naming the signal, also when it came outside a step (between two, during a
    retry's wait), where Dagster records a failure "interrupted unexpectedly"."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status != DagsterRunStatus.CANCELED:
        instance.report_run_canceled(run, message=f"interrupted by {signum.name}")
