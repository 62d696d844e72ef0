"""A 3-day backfill of the daily job, launched as the UI launches one (GraphQL `launchPartitionBackfill`
of the job's partition set, against a real `dagster-webserver`) and run by a real `dagster-daemon`
(both started by orchestration/serve.py).

The days run one at a time in order (run_queue max_concurrent_runs 1). The middle day's run worker
is SIGKILLed while dbt builds: its dbt stops with it (a watcher sends it SIGINT: it does not build
on, orphaned, holding the warehouse's lock), Dagster's code server records the run failed, and
run_retries re-executes it from the failed step. The retry is queued behind the last day, which has already
started (the daily partitions do not depend on the day before, so nothing makes a later day wait for
a failed one); a day older than the newest built rebuilds up to the newest, as of it, so the
backfill still ends with the last day's gold.

The gold is compared with the same days run without interruption (`pipeline run --date <day>` for
each day in order, on a fresh copy of the same demo data): a backfill that resumed after a kill must
end where one without a kill ends. (Not with one fresh `pipeline run --date <last day>`: whether
building day by day equals building the last day at once is a property of the incremental models,
not of orchestration.)
The test's DAGSTER_HOME has the project's dagster.yaml, dequeuing every second instead of every 5 s.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from conftest import REPO_ROOT, TEST_SEED, demo_environment, descendants, free_port, table_hash
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster_ui_support import LOCATION, REPOSITORY, graphql, stop_bucket_sensor, stop_daily_schedule

from demo.generate import generate
from orchestration import serve
from orchestration.dbt_assets import DBT_STOP_SECONDS
from pipeline.processes import alive

T = TypeVar("T")
DAYS = ("2026-09-28", "2026-09-29", "2026-09-30")
SCALE = 1500
GOLD = ("training_set", "fct_transaction_features", "user_daily_features", "preprocessing_parameters", "dataset_splits")
# name the build or the load (dlt's load id is its time), not the data: the reference has its own loads
LEAVE_OUT = {"fitted_by_invocation_id", "fitted_at", "source_load_id"}
TIMEOUT = 600


def settings(data_dir: Path) -> dict[str, str]:
    """The environment of the webserver, the daemon and a run (serve.py passes ours on)."""
    return demo_environment(data_dir) | {
        "DAGSTER_HOME": str(data_dir / "dagster"),
        "ML_FEATURES_FIRST_DAY": "2026-09-01",
        "ML_FEATURES_RETRY_WAIT": "2",  # a lock the killed run's dbt holds while it stops: waits 2, 6, 14 s
    }


def write_instance_config(home: Path) -> None:
    """The project's dagster.yaml, dequeuing every second (the test waits for each run)."""
    config = yaml.safe_load((REPO_ROOT / "orchestration" / "dagster.yaml").read_text())
    config["run_queue"]["dequeue_interval_seconds"] = 1
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def start_reference_backfill(data_dir: Path) -> subprocess.Popen[str]:
    """The same days without interruption, one `pipeline run --date <day>` after another (the daily
    job in process, what each run of the backfill does), on a fresh copy of the demo data."""
    generate(data_dir / "demo", seed=TEST_SEED, scale=SCALE)
    run = f"{sys.executable} -m pipeline.cli run --skip-export --skip-train --date"
    return subprocess.Popen(
        ["sh", "-c", " && ".join(f"{run} {day}" for day in DAYS)],
        cwd=REPO_ROOT,
        env={**os.environ, **settings(data_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def launch_backfill(port: int, days: tuple[str, ...]) -> str:
    """What the UI sends for 'Launch backfill' of the daily job's partitions."""
    launched = graphql(
        port,
        """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
             __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {
                    "partitionSetName": "daily_partition_set",
                    "repositorySelector": {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION},
                },
                "partitionNames": list(days),
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def backfill_runs(instance: DagsterInstance, backfill_id: str) -> list[DagsterRun]:
    return list(reversed(instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))))


def run_worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The run worker's PID, from the engine event it writes when it starts."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        if entry.message.startswith("Started process for run (pid: "):
            return int(entry.message.split("pid: ")[1].split(")")[0])
    return None


def dbt_has_built_a_model(instance: DagsterInstance, run_id: str) -> bool:
    return any(
        entry.dagster_event.step_key == "dbt_models"
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    )


def gold_of(data_dir: Path) -> dict[str, tuple[int, str]]:
    published = data_dir / "published" / "gold.duckdb"
    return {table: table_hash(published, f"marts.{table}", LEAVE_OUT.__contains__) for table in GOLD}


def wait_until(condition: Callable[[], T | None], what: str, log: Path) -> T:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")


@dataclass
class Backfill:
    data_dir: Path
    runs: list[DagsterRun]  # every run of the backfill, the retry too, in the order they started
    originals: dict[str, DagsterRun]  # day -> the run the backfill launched
    retried: DagsterRun | None
    killed_children: list[str]
    killed_events: list[str]
    dbt_ran_on: float  # seconds the killed run's dbt ran on after it
    times: dict[str, tuple[float, float]]  # run id -> (start, end)
    attempts: dict[str, dict[str, int]]  # run id -> step -> attempts
    failures: dict[str, list[str]]  # run id -> why its steps failed or were retried (printed)
    gold_after_last_day: dict[str, tuple[int, str]]
    gold_at_the_end: dict[str, tuple[int, str]]
    reference_gold: dict[str, tuple[int, str]]


def failure_messages(instance: DagsterInstance, run_id: str) -> list[str]:
    """Why each step of the run failed or was retried."""
    kinds = {DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_UP_FOR_RETRY}
    return [
        f"{entry.step_key} {entry.dagster_event.event_type_value}: {entry.message.strip()[:600]}"
        for entry in instance.all_logs(run_id, of_type=kinds)
    ]


def run_backfill(instance: DagsterInstance, backfill_id: str, data_dir: Path, log: Path) -> Backfill:
    """Wait for the middle day's dbt build, SIGKILL its run worker, wait for every run (the retry too)."""

    def middle_day_building() -> DagsterRun | None:
        for run in backfill_runs(instance, backfill_id):
            if run.tags.get("dagster/partition") == DAYS[1] and run.status == DagsterRunStatus.STARTED:
                if dbt_has_built_a_model(instance, run.run_id):
                    return run
        return None

    middle = wait_until(middle_day_building, "the middle day's dbt build", log)
    pid = run_worker_pid(instance, middle.run_id)
    assert pid is not None
    children = descendants(pid)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    [dbt] = [child for child, command in children.items() if "dbt build" in command]
    while alive(dbt) and time.monotonic() < killed_at + TIMEOUT:
        time.sleep(0.1)
    dbt_ran_on = time.monotonic() - killed_at

    def last_day_done() -> DagsterRun | None:
        return next(
            (
                run
                for run in backfill_runs(instance, backfill_id)
                if run.tags.get("dagster/partition") == DAYS[-1] and run.is_finished
            ),
            None,
        )

    wait_until(last_day_done, "the last day", log)
    gold_after_last_day = gold_of(data_dir)  # read before the retry's build (it starts ~20 s later)

    def all_done() -> list[DagsterRun] | None:
        found = backfill_runs(instance, backfill_id)
        retry_pending = any(
            run.run_id == middle.run_id and not run.tags.get("dagster/auto_retry_run_id") for run in found
        )
        return found if all(run.is_finished for run in found) and not retry_pending else None

    found = wait_until(all_done, "every run of the backfill, the retry too", log)
    times = {}
    attempts = {}
    for run in found:
        record = instance.get_run_record_by_id(run.run_id)
        times[run.run_id] = (record.start_time, record.end_time)
        attempts[run.run_id] = {step.step_key: step.attempts for step in instance.get_run_step_stats(run.run_id)}
    found.sort(key=lambda run: times[run.run_id][0])
    return Backfill(
        data_dir=data_dir,
        runs=found,
        originals={run.tags["dagster/partition"]: run for run in found if not run.parent_run_id},
        retried=next((run for run in found if run.parent_run_id == middle.run_id), None),
        killed_children=list(children.values()),
        dbt_ran_on=dbt_ran_on,
        killed_events=[entry.message for entry in instance.all_logs(middle.run_id) if entry.message],
        times=times,
        attempts=attempts,
        failures={run.run_id: failure_messages(instance, run.run_id) for run in found},
        gold_after_last_day=gold_after_last_day,
        gold_at_the_end=gold_of(data_dir),
        reference_gold={},
    )


@pytest.fixture(scope="module")
def backfill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfill]:
    reference_dir = tmp_path_factory.mktemp("reference")
    reference = start_reference_backfill(reference_dir)  # meanwhile: its own data folder and instance
    data_dir = tmp_path_factory.mktemp("backfill")
    generate(data_dir / "demo", seed=TEST_SEED, scale=SCALE)
    write_instance_config(data_dir / "dagster")
    port = free_port()
    log = data_dir / "dagster.log"
    processes: list[subprocess.Popen[bytes]] = []
    with pytest.MonkeyPatch.context() as patch, log.open("ab") as output:
        for key, value in settings(data_dir).items():
            patch.setenv(key, value)
        try:
            processes.append(serve.start_webserver(port, output))
            serve.wait_until_up(serve.url(port), processes[0])
            stop_bucket_sensor(port)
            stop_daily_schedule(port)
            backfill_id = launch_backfill(port, DAYS)
            processes.append(serve.start_daemon(output))
            with DagsterInstance.from_config(str(data_dir / "dagster")) as instance:
                result = run_backfill(instance, backfill_id, data_dir, log)
        finally:
            serve.stop(*processes)
    reference_output, _ = reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 0, reference_output
    result.reference_gold = gold_of(reference_dir)
    yield result


def test_the_backfill_runs_its_days_one_at_a_time_in_order(backfill: Backfill) -> None:
    first = backfill.times[backfill.runs[0].run_id][0]
    for run in backfill.runs:
        start, end = backfill.times[run.run_id]
        retry = f" (retry of {run.parent_run_id[:8]})" if run.parent_run_id else ""
        print(
            f"{run.tags['dagster/partition']} {run.run_id[:8]}{retry} {run.status.value:<8} "
            f"{start - first:6.1f} .. {end - first:6.1f} s, attempts {backfill.attempts[run.run_id]}"
        )
        print("".join(f"  {message}\n" for message in backfill.failures[run.run_id]), end="")
    originals = [run for run in backfill.runs if not run.parent_run_id]
    assert [run.tags["dagster/partition"] for run in originals] == list(DAYS)
    spans = [backfill.times[run.run_id] for run in backfill.runs]
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end  # never two at once (run_queue max_concurrent_runs 1)


def test_a_killed_run_is_marked_failed_and_retried_from_the_failed_step(backfill: Backfill) -> None:
    middle = backfill.originals[DAYS[1]]
    print(f"the killed run worker's children: {backfill.killed_children}")
    print("\n".join(backfill.killed_events[-4:]))
    assert any("dbt build" in child for child in backfill.killed_children)  # killed while dbt built
    # its dbt stopped with it (SIGINT from the watcher), not left building, orphaned, holding the lock
    print(f"the killed run's dbt ran on for {backfill.dbt_ran_on:.1f} s")
    assert backfill.dbt_ran_on < DBT_STOP_SECONDS + 5
    assert middle.status == DagsterRunStatus.FAILURE
    assert any("terminated by signal 9 (SIGKILL)" in message for message in backfill.killed_events)
    retried = backfill.retried
    assert retried is not None and retried.status == DagsterRunStatus.SUCCESS
    assert retried.tags["dagster/partition"] == DAYS[1]
    steps = backfill.attempts[retried.run_id]
    print(f"steps the retry ran: {steps}")
    assert "dbt_models" in steps and not any(step.startswith("extract_") for step in steps)  # from the failure on
    first, last = backfill.originals[DAYS[0]], backfill.originals[DAYS[2]]
    assert first.status == last.status == DagsterRunStatus.SUCCESS, backfill.failures[last.run_id]


def test_the_last_day_publishes_the_gold_of_an_uninterrupted_backfill(backfill: Backfill) -> None:
    """The killed day before it did not spoil the warehouse: the last day's run published what the
    last day of the same backfill without a kill publishes."""
    print({table: rows for table, (rows, _) in backfill.gold_after_last_day.items()})
    assert backfill.gold_after_last_day == backfill.reference_gold


def test_the_backfill_ends_with_the_last_days_gold(backfill: Backfill) -> None:
    """The killed day's retry may run after the last day (nothing makes a later day wait for a failed
    one); the gold never goes back in time, so the backfill still ends with the last day's gold."""
    retried = backfill.retried
    assert retried is not None
    assert backfill.gold_at_the_end == backfill.reference_gold
