"""Ctrl-C and SIGTERM stop `pipeline run` (they restarted its step before: Dagster retries a step
with a RetryPolicy whatever stopped it, an interrupt included).

One data folder goes through real `pipeline run` subprocesses, each in a process group of its own
as a shell's job is:

    A  Ctrl-C (SIGINT to the group) during extract, as dlt loads the app source     -> exit 130
    B  SIGTERM to the pipeline alone mid-build, then Ctrl-C while dbt stops           -> exit 143
    C  an uninterrupted run                                                           -> exit 0

After A and B: the process group is empty (no dbt, no dlt, nothing orphaned), the interrupted step
ran once (no retry) and no step started after it, the run is recorded canceled naming the signal,
the summary (stdout) says so in one line without a traceback, nothing was published. C publishes
the gold an uninterrupted run in a fresh folder publishes.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, demo_environment
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from test_fault_pipeline import data_folder, gold_tables, nodes_finished

from demo.generate import generate
from pipeline.processes import group_alive

SCALE = 1_500
RUN = [
    sys.executable,
    *("-m", "pipeline.cli", "run", "--date", "2026-09-30", "--skip-export", "--skip-train"),
]
STOPPED = 120.0  # a run that has not ended this long after the signal did not stop (it restarted its step)
WHOLE_RUN = 900.0  # an uninterrupted run (about 90 s here, more on a loaded CI machine)


@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = tmp_path_factory.mktemp("interrupt_demo") / "demo"
    generate(demo, seed=11, scale=SCALE)
    return demo


class Run:
    """A `pipeline run` in a process group of its own (its pid is the group's), output line by line."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        # stderr apart: whatever escapes the run's log file (Dagster's own log goes there)
        self.errors = (data_dir.parent / f"{data_dir.name}-{time.monotonic_ns()}.stderr").open("w")
        environment = {**os.environ, **demo_environment(data_dir), "ML_FEATURES_RETRY_WAIT": "0.5"}
        self.process = subprocess.Popen(
            RUN,
            cwd=REPO_ROOT,
            env=environment | {"PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []

    def read_until(self, pattern: str) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if re.search(pattern, line):
                return
        raise AssertionError(f"the run ended before {pattern!r}:\n{self.output}")

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def run_id(self) -> str:
        found = re.search(r"\[run\] ([0-9a-f-]{36}): daily job", self.output)
        assert found, self.output
        return found[1]

    def finish(self, timeout: float = STOPPED) -> int:
        """The exit code; fails when the run goes on for `timeout` seconds (after a signal: it restarted
        its step, as it did before)."""
        assert self.process.stdout is not None
        try:
            rest, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            rest, _ = self.process.communicate()
            self.lines.append(rest)
            raise AssertionError(f"still running after {timeout:.0f} s:\n{self.output}") from None
        self.lines.append(rest)
        self.errors.close()
        return self.process.returncode

    def wait_in_dbt_log(self, count: int) -> None:
        """Until dbt (its JSON log in the run's target folder) has finished `count` nodes."""
        while True:
            logs = sorted(self.data_dir.glob(f"target/dbt_models-{self.run_id[:7]}-*/dbt.log"))
            events = [json.loads(line) for log in logs for line in log.read_text().splitlines() if line.strip()]
            if nodes_finished(count)(events):
                return
            assert self.process.poll() is None, f"the run ended first:\n{self.output}"
            time.sleep(0.05)


def group_left(group: int) -> bool:
    """Whether a process of the group is still there a few seconds after its leader ended."""
    deadline = time.monotonic() + 5
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    return group_alive(group)


def assert_stopped(run: Run, code: int, signal_name: str, step: str) -> None:
    """`run` ended with `code`, left no process, ran `step` once and none after it, and was recorded
    canceled by `signal_name`."""
    assert code == 128 + signal.Signals[signal_name].value, f"exit code {code}:\n{run.output}"
    assert not group_left(run.process.pid), "a process of the run (dbt? dlt?) outlived it"
    output = run.output
    assert f"pipeline run interrupted by {signal_name}" in output, output
    assert f"{step} stopped: interrupted by {signal_name} (not retried)" in output, output
    assert "Traceback" not in output, output
    instance = DagsterInstance.from_config(str(run.data_dir / "dagster"))
    record = instance.get_run_by_id(run.run_id)
    assert record is not None and record.status == DagsterRunStatus.CANCELED, record
    messages = [
        entry.dagster_event.message or ""
        for entry in instance.all_logs(run.run_id)
        if entry.dagster_event
        and entry.dagster_event.event_type in (DagsterEventType.RUN_CANCELING, DagsterEventType.RUN_CANCELED)
    ]
    assert f"interrupted by {signal_name}" in messages, messages
    assert not instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    steps = sorted(instance.get_run_step_stats(run.run_id), key=lambda stats: stats.start_time or 0)
    assert steps[-1].step_key == step and steps[-1].attempts == 1, steps  # no retry, no step after it
    assert all(stats.status.value == "SUCCESS" for stats in steps[:-1]), steps
    assert not (run.data_dir / "published" / "gold.duckdb").exists()  # nothing published


def test_ctrl_c_and_sigterm_stop_the_run_and_the_next_run_publishes_what_an_uninterrupted_run_does(
    demo_sources: Path, tmp_path: Path
) -> None:
    data_dir = data_folder(tmp_path / "interrupted", demo_sources)

    # A: Ctrl-C while dlt loads the app source: the terminal sends SIGINT to the whole job
    a = Run(data_dir)
    a.read_until(r"\[extract\] app started")
    time.sleep(0.3)
    os.killpg(a.process.pid, signal.SIGINT)
    code = a.finish()
    # the app source loads in about a second here: on a fast machine the signal can land in the next source
    interrupted = re.search(r"(extract_\w+) stopped: interrupted by SIGINT", a.output)
    assert interrupted, f"no extract step was interrupted:\n{a.output}"
    assert_stopped(a, code, "SIGINT", interrupted[1])
    assert "[build] dbt build" not in a.output

    # B: SIGTERM to the pipeline alone mid-build (a scheduler, `kill`), a Ctrl-C while dbt stops
    b = Run(data_dir)
    b.read_until(r"\[build\] dbt build")
    b.wait_in_dbt_log(20)
    os.kill(b.process.pid, signal.SIGTERM)
    time.sleep(0.05)  # taken (a pending SIGINT would be delivered first), and dbt is still stopping
    os.killpg(b.process.pid, signal.SIGINT)
    assert_stopped(b, b.finish(), "SIGTERM", "dbt_models")
    assert b.output.count("[build] dbt build") == 1, b.output  # one dbt build: not started again

    # C: the next run is a normal one: the interrupted runs were recorded by themselves, not as dead
    c = Run(data_dir)
    assert c.finish(WHOLE_RUN) == 0, c.output
    assert "as failed: its process was killed" not in c.output, c.output

    reference = data_folder(tmp_path / "reference", demo_sources)
    clean = Run(reference)
    assert clean.finish(WHOLE_RUN) == 0, clean.output
    assert gold_tables(data_dir / "published" / "gold.duckdb") == gold_tables(reference / "published" / "gold.duckdb")
