"""Which failures Dagster retries, read from the Dagster instance a real `pipeline run` recorded.

One demo data folder for the module, each `pipeline run` a real subprocess (in process Dagster, no
daemon), in this order:

1. another process holds the warehouse's DuckDB write lock for the whole run: every extract step is
   tried 1 + 3 times, Dagster waiting 0.2, 0.6 and 1.4 s between (exponential backoff), and the run
   fails naming the process holding the lock;
2. the lock is released after the first failed attempts: the run succeeds, the summary shows the retries;
3. a run SIGKILLed while dbt builds stays STARTED in the instance until the next `pipeline run`
   records it failed (orchestration/instance.py fail_dead_runs); that run succeeds and publishes the
   same gold as the uninterrupted run of step 2;
4. a transaction with a status the contract does not know: the dbt test fails, the dbt step runs
   once (no retry), the run fails naming the test, the published gold is unchanged;
5. a demo file is missing (a configuration error): its extract step fails at once.
"""

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TEST_SEED, demo_environment, descendants, table_hash
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.execution.stats import RunStepKeyStatsSnapshot

from demo.generate import generate
from orchestration.instance import PID_TAG

DAY = "2026-09-30"
SCALE = 1500
WAIT = 0.2  # ML_FEATURES_RETRY_WAIT: Dagster waits 0.2, 0.6, 1.4 s before retries 1, 2, 3
EXTRACTS = ("extract_app", "extract_chargebacks", "extract_events", "extract_fx")
GOLD = ("training_set", "fct_transaction_features", "user_daily_features", "preprocessing_parameters", "dataset_splits")
BUILD_COLUMNS = {"fitted_by_invocation_id", "fitted_at"}  # name the build, not the data
FAILING_TEST = "accepted_values_int_transactions_cleaned_status"
LEAN = ("--skip-export", "--skip-train")  # the gold is published by the build; export and train add nothing here


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class Run:
    """One `pipeline run`: its exit code, what it printed, and what Dagster recorded of it."""

    code: int
    output: str
    run: DagsterRun
    steps: dict[str, RunStepKeyStatsSnapshot]
    retry_waits: dict[str, list[float]] = field(default_factory=dict)
    gold: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class Story:
    data_dir: Path
    locked: Run
    released: Run
    killed: DagsterRun
    killed_status_before_next_run: DagsterRunStatus
    dbt_was_running: bool
    after_kill: Run
    data_error: Run
    missing_file: Run


def environment(data_dir: Path, wait: float) -> dict[str, str]:
    import os

    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}  # default: <data dir>/dagster
    return env | demo_environment(data_dir) | {"ML_FEATURES_RETRY_WAIT": str(wait)}


def instance(data_dir: Path) -> DagsterInstance:
    return DagsterInstance.from_config(str(data_dir / "dagster"))


def run_of(data_dir: Path, process: subprocess.Popen[str]) -> DagsterRun | None:
    """The run `pipeline run` process `process` started (it tags its runs with its PID), once recorded."""
    if not (data_dir / "dagster" / "dagster.yaml").exists():  # `pipeline run` has not set the instance up yet
        return None
    with instance(data_dir) as dagster:
        runs = dagster.get_runs(RunsFilter(tags={PID_TAG: str(process.pid)}), limit=1)
        return runs[0] if runs else None


def start(data_dir: Path, wait: float, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--date", DAY, *args],
        cwd=REPO_ROOT,
        env=environment(data_dir, wait),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def recorded(data_dir: Path, process: subprocess.Popen[str]) -> Run:
    """Wait for a `pipeline run` and read what the instance recorded of its (newest) run."""
    output, errors = process.communicate(timeout=300)
    if "Traceback" in errors:  # a stack trace is never the answer to a failure, transient or not
        pytest.fail(f"pipeline run crashed:\n{output}\n{errors[-3000:]}")
    run = run_of(data_dir, process)
    assert run is not None, output
    with instance(data_dir) as dagster:
        steps = {step.step_key: step for step in dagster.get_run_step_stats(run.run_id)}
        waits: dict[str, list[float]] = {}
        for entry in dagster.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY):
            event = entry.dagster_event
            waits.setdefault(event.step_key, []).append(event.step_retry_data.seconds_to_wait)
    published = data_dir / "published" / "gold.duckdb"
    gold = (
        {table: table_hash(published, f"marts.{table}", BUILD_COLUMNS.__contains__) for table in GOLD}
        if published.exists()
        else {}
    )
    return Run(process.returncode, output, run, steps, waits, gold)


def hold_lock(duckdb_path: Path) -> subprocess.Popen[str]:
    """Another real process with the warehouse open for writing (DuckDB: one writer, file-locked)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); sys.stdin.read()",
            str(duckdb_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    holder.communicate(input="", timeout=30)


def first_retry_seen(data_dir: Path, process: subprocess.Popen[str]) -> bool:
    """Wait until the running `pipeline run` recorded a step up for retry; False if it ended first."""
    while process.poll() is None:
        run = run_of(data_dir, process)
        if run is not None:
            with instance(data_dir) as dagster:
                if dagster.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY):
                    return True
        time.sleep(0.1)
    return False


def kill_while_dbt_builds(data_dir: Path) -> tuple[DagsterRun, bool]:
    """Start `pipeline run`, SIGKILL it once dbt has built its first model (Dagster recorded the
    materialization); the run, and whether a `dbt build` child was running at that moment."""
    process = start(data_dir, WAIT, *LEAN)
    try:
        while process.poll() is None:
            run = run_of(data_dir, process)
            if run is not None and run.status == DagsterRunStatus.STARTED:
                with instance(data_dir) as dagster:
                    built = [
                        entry
                        for entry in dagster.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
                        if entry.dagster_event.step_key == "dbt_models"
                    ]
                if built:
                    dbt = [pid for pid, command in descendants(process.pid).items() if "dbt build" in command]
                    process.send_signal(signal.SIGKILL)
                    process.communicate()
                    # a killed parent leaves its dbt child running on its own; the next run must not
                    # start while it holds the warehouse (a lock is case 1)
                    deadline = time.monotonic() + 180
                    while any(alive(pid) for pid in dbt) and time.monotonic() < deadline:
                        time.sleep(0.2)
                    return run, bool(dbt)
            time.sleep(0.1)
        pytest.fail(f"pipeline run ended (exit {process.returncode}) before dbt built a model")
    finally:
        if process.poll() is None:
            process.kill()
    raise AssertionError("unreachable")


def add_unknown_status(demo_dir: Path) -> None:
    """The app starts sending a status the contract does not know, on its newest row (read next run)."""
    with sqlite3.connect(demo_dir / "app.sqlite") as connection:
        connection.execute(
            "update transactions set status = 'disputed', updated_at = (select max(updated_at) from transactions) "
            "where transaction_id = (select max(transaction_id) from transactions where created_at <= ?)",
            [DAY],
        )


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    data_dir = tmp_path_factory.mktemp("retries")
    generate(data_dir / "demo", seed=TEST_SEED, scale=SCALE)
    warehouse = data_dir / "warehouse.duckdb"

    holder = hold_lock(warehouse)
    try:
        locked = recorded(data_dir, start(data_dir, WAIT))
    finally:
        release(holder)

    holder = hold_lock(warehouse)
    try:
        process = start(data_dir, 1.0, *LEAN)  # waits 1, 3, 7 s: time to see the first retry and release the lock
        seen = first_retry_seen(data_dir, process)
    finally:
        release(holder)
    assert seen, "the run ended before any retry"
    released = recorded(data_dir, process)

    killed, dbt_was_running = kill_while_dbt_builds(data_dir)
    with instance(data_dir) as dagster:
        status_before_next_run = dagster.get_run_by_id(killed.run_id).status
    after_kill = recorded(data_dir, start(data_dir, WAIT, *LEAN))
    with instance(data_dir) as dagster:
        killed = dagster.get_run_by_id(killed.run_id)

    add_unknown_status(data_dir / "demo")
    data_error = recorded(data_dir, start(data_dir, WAIT, *LEAN))

    fx = data_dir / "demo" / "fx_rates.parquet"
    fx.rename(fx.with_suffix(".moved"))
    missing_file = recorded(data_dir, start(data_dir, WAIT, "--skip-build", "--skip-export", "--skip-train"))
    yield Story(
        data_dir,
        locked,
        released,
        killed,
        status_before_next_run,
        dbt_was_running,
        after_kill,
        data_error,
        missing_file,
    )


def test_a_locked_warehouse_is_retried_three_times_with_backoff_then_fails_naming_the_holder(story: Story) -> None:
    locked = story.locked
    print(locked.output)
    assert locked.code == 1 and locked.run.status == DagsterRunStatus.FAILURE
    for step in EXTRACTS:
        assert locked.steps[step].attempts == 4, step
        assert locked.retry_waits[step] == pytest.approx([WAIT * 1, WAIT * 3, WAIT * 7]), step
    assert "dbt_models" not in locked.steps or locked.steps["dbt_models"].status.value == "SKIPPED"
    holder = [line for line in locked.output.splitlines() if line.startswith("extract_app failed:")]
    assert len(holder) == 1 and "is locked by another process (PID" in holder[0], locked.output
    assert "tried 4 times" in holder[0]


def test_dagster_waits_out_each_backoff_before_the_next_attempt(story: Story) -> None:
    """Between a step's retry event and its restart, at least the wait the policy asked for passed."""
    with instance(story.data_dir) as dagster:
        events = [
            entry
            for entry in dagster.all_logs(story.locked.run.run_id)
            if entry.dagster_event and entry.dagster_event.step_key == "extract_app"
        ]
    retries = [e for e in events if e.dagster_event.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    restarts = [e for e in events if e.dagster_event.event_type == DagsterEventType.STEP_RESTARTED]
    assert len(retries) == len(restarts) == 3
    for retry, restart in zip(retries, restarts, strict=True):
        waited = restart.timestamp - retry.timestamp
        print(f"asked {retry.dagster_event.step_retry_data.seconds_to_wait:.1f} s, waited {waited:.2f} s")
        assert waited >= retry.dagster_event.step_retry_data.seconds_to_wait - 0.05


def test_a_lock_released_during_the_retries_lets_the_run_succeed_and_the_summary_shows_the_retries(
    story: Story,
) -> None:
    released = story.released
    print(released.output)
    assert released.code == 0 and released.run.status == DagsterRunStatus.SUCCESS, released.output
    retried = [step for step in EXTRACTS if released.steps[step].attempts > 1]
    assert retried and all(released.steps[step].status.value == "SUCCESS" for step in EXTRACTS)
    lines = {line.split()[0]: line for line in released.output.splitlines() if line.startswith("  extract_")}
    for step in retried:
        attempts = released.steps[step].attempts
        assert lines[step].endswith(f"{attempts - 1} retr{'y' if attempts == 2 else 'ies'}"), lines[step]
    assert released.steps["dbt_models"].attempts == 1 and released.gold


def test_a_killed_run_is_recorded_failed_by_the_next_run_which_publishes_the_uninterrupted_gold(story: Story) -> None:
    print(story.after_kill.output)
    assert story.killed_status_before_next_run == DagsterRunStatus.STARTED  # nobody could say it died
    assert story.killed.status == DagsterRunStatus.FAILURE
    assert f"recorded run {story.killed.run_id} as failed" in story.after_kill.output
    assert story.after_kill.code == 0, story.after_kill.output
    print(f"dbt build was running when the run was killed: {story.dbt_was_running}")
    assert story.after_kill.gold == story.released.gold


def test_a_failing_data_test_fails_at_once_without_retry_and_publishes_nothing(story: Story) -> None:
    failed = story.data_error
    print(failed.output)
    assert failed.code == 1 and failed.run.status == DagsterRunStatus.FAILURE
    assert failed.steps["dbt_models"].attempts == 1 and failed.steps["dbt_models"].status.value == "FAILURE"
    assert "dbt_models" not in failed.retry_waits
    assert FAILING_TEST in failed.output and "validation failed" in failed.output
    assert "transient" not in failed.output
    assert failed.gold == story.after_kill.gold  # the published file still holds the last good gold


def test_a_missing_demo_file_fails_its_extract_at_once(story: Story) -> None:
    missing = story.missing_file
    print(missing.output)
    assert missing.code == 1
    assert missing.steps["extract_fx"].attempts == 1 and missing.steps["extract_fx"].status.value == "FAILURE"
    assert "extract_fx" not in missing.retry_waits
    assert "fx_rates.parquet is missing" in missing.output and "not retried" in missing.output
    assert all(missing.steps[step].status.value == "SUCCESS" for step in EXTRACTS if step != "extract_fx")
