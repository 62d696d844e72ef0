"""`pipeline run`: the daily job materialized in this process (no daemon, no webserver), recorded
in the Dagster instance like any run, so `make dagster` shows it and a schedule's runs alike.

Exit codes: 0 success, 1 failed.
"""

import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey
from dagster._core.utils import make_new_run_id

from extract.load import data_dir
from orchestration.instance import PID_TAG, dagster_home, fail_dead_runs, get_instance
from orchestration.partitions import FIRST_DAY
from pipeline.console import log, pinned_output

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
    from orchestration.definitions import ASSETS, daily_job, defs  # after the settings above are in place
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
    run_id = make_new_run_id()
    log(
        f"[run] {run_id}: daily job, partition {options.day}, target {os.environ.get('DBT_TARGET', 'dev')} "
        f"(DAGSTER_HOME {home})"
    )
    log(f"[run] dbt's and dlt's own output: {output}")
    with output.open("a") as stream, pinned_output(), contextlib.redirect_stdout(stream):
        result = job.execute_in_process(
            partition_key=options.day.isoformat(),
            run_id=run_id,
            instance=instance,
            run_config=config,
            asset_selection=selected_assets(options, ASSETS),
            tags={PID_TAG: str(os.getpid())},
            raise_on_error=False,
        )
    print_summary(instance, result.run_id)
    after_run(instance, result.run_id)  # slow steps, error rate, open alerts; the metrics file and the report
    return EXIT_OK if result.success else EXIT_FAILED
