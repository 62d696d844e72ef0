"""A load killed part-way (SIGKILL, a real subprocess) is invisible downstream and finished by the next run.

The event stream is loaded once as of an earlier day. The next load (three days later) runs as
`python -m extract` in a subprocess, with small Arrow chunks and one load worker so its load step
has many jobs; it is killed with SIGKILL right after its first job landed in the warehouse.
Staging's filter (rows of loads recorded in `_dlt_loads`) then sees exactly the first load's
rows; the next run finishes the pending load, and every delivered row is stored (at least) once.
"""

import signal
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from extract_support import Workspace, completed_rows, start_cli, workspace

from demo.generate import generate
from extract.load import load_source

SEED = 17
SCALE = 2_500


def distinct_event_ids(space: Workspace) -> set[str]:
    return {
        event_id
        for path in (space.demo_dir / "events").rglob("*.parquet")
        for event_id in pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    }


def delivered_rows(space: Workspace) -> int:
    """Rows in all the micro-batch files (an event delivered twice counts twice)."""
    return sum(pq.read_metadata(path).num_rows for path in (space.demo_dir / "events").rglob("*.parquet"))


def kill_after_first_job(space: Workspace) -> str:
    """Run the events load in a subprocess and SIGKILL it once a load job has completed; return its load id."""
    process = start_cli(
        space,
        "events",
        SOURCES__EVENT_STREAM__CHUNK_ROWS="400",
        DATA_WRITER__FILE_MAX_ITEMS="400",
        LOAD__WORKERS="1",
    )
    normalized = space.pipelines_dir / "ml_features_events" / "load" / "normalized"
    deadline = time.monotonic() + 180
    while not any(normalized.glob("*/completed_jobs/events.*.parquet")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the load ended before it could be killed: {process.communicate()}")
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    # the package is still waiting to be loaded (a file beside it may be a temp file the kill left)
    [package] = [path for path in normalized.iterdir() if path.is_dir()]
    return package.name


def test_killed_load_is_invisible_and_the_next_run_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=date(2026, 4, 1))
    load_source("events")
    visible_before = completed_rows(space, "events", "events")
    assert visible_before == delivered_rows(space) > len(distinct_event_ids(space)) > 0

    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=date(2026, 4, 20))
    killed = kill_after_first_job(space)

    # the killed load reached the raw table (its first job's rows were appended) ...
    [(landed,)] = space.query(f"select count(*) from raw_events.events where _dlt_load_id = '{killed}'")
    assert landed > 0
    # ... but is not recorded as completed, so staging's filter still sees exactly the first load
    assert not space.query(f"select * from raw_events._dlt_loads where load_id = '{killed}'")
    assert completed_rows(space, "events", "events") == visible_before

    finished = load_source("events")
    assert finished.resumed == [killed]
    [(status,)] = space.query(f"select status from raw_events._dlt_loads where load_id = '{killed}'")
    assert status == 0
    # every delivered row is in raw; a job that committed just before the kill may be loaded again
    # by the resumed load (same _dlt_id), which staging's deduplication on event_id absorbs
    [(rows, row_ids, distinct)] = space.query(
        "select count(*), count(distinct _dlt_id), count(distinct event_id) from raw_events.events"
    )
    assert row_ids == delivered_rows(space) and rows == completed_rows(space, "events", "events")
    assert distinct == len(distinct_event_ids(space))
