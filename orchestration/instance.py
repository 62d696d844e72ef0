"""The Dagster instance: DAGSTER_HOME defaults to `<data dir>/dagster`, with the project's
dagster.yaml (one run at a time, dead runs retried, telemetry off) copied there when missing."""

import os
import shutil
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from extract.load import data_dir
from pipeline.warehouse.published import process_exists

CONFIG = Path(__file__).with_name("dagster.yaml")
PID_TAG = "ml_features/pid"


def dagster_home() -> Path:
    """DAGSTER_HOME when set, else `<data dir>/dagster`, holding the project's dagster.yaml.

    It is not written back to the environment: a later run with another data folder (a test, a
    second project in one shell) gets its own instance."""
    home = Path(os.environ.get("DAGSTER_HOME") or (data_dir() / "dagster")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(CONFIG, home / "dagster.yaml")
    return home


def get_instance() -> DagsterInstance:
    """The instance at dagster_home()."""
    return DagsterInstance.from_config(str(dagster_home()))


def fail_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the in-process runs (`pipeline run`) whose process is gone: killed, they could not
    say so themselves (runs the daemon launched are watched by Dagster's run monitoring)."""
    dead = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        pid = run.tags.get(PID_TAG)
        if pid and not process_exists(int(pid)):
            instance.report_run_failed(run, f"its process (PID {pid}) ended without finishing the run (killed)")
            dead.append(run.run_id)
    return dead
