"""A load killed part-way (SIGKILL, a real subprocess) is invisible downstream, and the next run
finishes it without storing a row twice and counts the rows it finished.

The event stream is loaded once as of an earlier day. The next load (three days later) runs as
`python -m extract` in a subprocess, with small Arrow chunks and one load worker so its load step
has many jobs, and is killed with SIGKILL:

- right after its first job landed in `completed_jobs` (watched from outside), or
- in the window where a job's INSERT has committed but dlt has not yet written that it did (the
  process kills itself right before dlt writes that marker): dlt runs that job again on resume, and
  before the fix it appended the job's rows a second time with the same `_dlt_id`s.

Staging's filter (rows of loads recorded in `_dlt_loads`) sees exactly the first load's rows until
the next run finishes the pending load; then raw holds every delivered row exactly once.
"""

import signal
import subprocess
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from extract_support import JOB_COMMITTED, Milestone, Workspace, completed_rows, start_cli, start_cli_at, workspace

from demo.generate import generate
from extract.load import load_source

SEED = 17
SCALE = 2_500
SMALL_JOBS = {"SOURCES__EVENT_STREAM__CHUNK_ROWS": "400", "DATA_WRITER__FILE_MAX_ITEMS": "400", "LOAD__WORKERS": "1"}


def distinct_event_ids(space: Workspace) -> set[str]:
    return {
        event_id
        for path in (space.demo_dir / "events").rglob("*.parquet")
        for event_id in pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    }


def delivered_rows(space: Workspace) -> int:
    """Rows in all the micro-batch files (an event delivered twice counts twice)."""
    return sum(pq.read_metadata(path).num_rows for path in (space.demo_dir / "events").rglob("*.parquet"))


def normalized_packages(space: Workspace) -> Path:
    return space.pipelines_dir / "ml_features_events" / "load" / "normalized"


def pending_package(space: Workspace, process: subprocess.Popen[str]) -> str:
    """Wait for the SIGKILLed process; the load id of the package it left waiting to be loaded."""
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    # a file beside the package may be a temp file the kill left
    [package] = [path for path in normalized_packages(space).iterdir() if path.is_dir()]
    return package.name


def kill_after_first_job(space: Workspace) -> str:
    """Run the events load in a subprocess and SIGKILL it once a load job has completed; return its load id."""
    process = start_cli(space, "events", **SMALL_JOBS)
    deadline = time.monotonic() + 180
    while not any(normalized_packages(space).glob("*/completed_jobs/events.*.parquet")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the load ended before it could be killed: {process.communicate()}")
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    return pending_package(space, process)


def kill_when_job_committed(space: Workspace) -> str:
    """Run the events load in a subprocess that SIGKILLs itself after its second events job's INSERT
    committed, before dlt recorded that; return the load id it left pending."""
    return pending_package(space, start_cli_at(space, "events", Milestone(JOB_COMMITTED, 2, " events."), **SMALL_JOBS))


def loaded_once_then_new_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Workspace, int]:
    """A workspace whose events were loaded as of one day, its demo regenerated three weeks later."""
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=date(2026, 4, 1))
    load_source("events")
    visible_before = completed_rows(space, "events", "events")
    assert visible_before == delivered_rows(space) > len(distinct_event_ids(space)) > 0
    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=date(2026, 4, 20))
    return space, visible_before


def assert_every_delivery_once(space: Workspace) -> None:
    """Every delivered row is in raw exactly once, and every raw row belongs to a completed load."""
    [(rows, row_ids, distinct)] = space.query(
        "select count(*), count(distinct _dlt_id), count(distinct event_id) from raw_events.events"
    )
    assert rows == row_ids == delivered_rows(space) == completed_rows(space, "events", "events")
    assert distinct == len(distinct_event_ids(space))
    [(loads, distinct_loads)] = space.query("select count(*), count(distinct load_id) from raw_events._dlt_loads")
    assert loads == distinct_loads


@pytest.mark.parametrize("kill", [kill_after_first_job, kill_when_job_committed])
def test_killed_load_is_invisible_and_the_next_run_completes_it_once(
    kill: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space, visible_before = loaded_once_then_new_day(tmp_path, monkeypatch)
    killed = kill(space)  # type: ignore[operator]

    # the killed load reached the raw table (a job's rows were appended) ...
    [(landed,)] = space.query(f"select count(*) from raw_events.events where _dlt_load_id = '{killed}'")
    assert landed > 0
    # ... but is not recorded as completed, so staging's filter still sees exactly the first load
    assert not space.query(f"select * from raw_events._dlt_loads where load_id = '{killed}'")
    assert completed_rows(space, "events", "events") == visible_before

    finished = load_source("events")
    assert finished.resumed == [killed]
    [(status,)] = space.query(f"select status from raw_events._dlt_loads where load_id = '{killed}'")
    assert status == 0
    assert_every_delivery_once(space)
    # the finished load's rows are reported and counted, not "no new rows"
    new_rows = delivered_rows(space) - visible_before
    assert finished.resumed_rows == finished.rows == {"events": new_rows}
    assert f"finished interrupted load {killed}: events {new_rows:,}" in finished.describe()
