"""Kills of `pipeline run` at many moments (issue 21, defect 8; issue 23) and readers of the published
gold (defect 7).

One data folder goes through a chain of real `pipeline run` subprocesses, each killed with SIGKILL
at another moment, the next run being the rerun of the one before:

    A  the pipeline, during extract (after the app source loaded)
    B  its dbt child, mid-build (after 50 nodes)      -> a transient failure: Dagster retries the
                                                         build step, and the run succeeds
    C  the pipeline and its dbt, during the on-run-end publish hook
    D  its dbt child, right after the publish          -> retried too; gold PUBLISHED
    E  the pipeline, during export
    F  the pipeline alone, mid-build: its dbt is stopped with it, publishes nothing
    G  an uninterrupted run

After each kill the Dagster run history is truthful: a run whose process was killed is recorded
failed by the next run (which names it), a killed dbt is retried within its run, and a dbt whose
pipeline was killed stops within seconds instead of building on, orphaned, holding the warehouse's
lock. The published gold at the end equals an uninterrupted run's. All along, one reader process
polls the published file every 0.1 s and another holds a connection to it open: neither ever
fails, every poll sees one whole version, and no run fails for them.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from conftest import REPO_ROOT, demo_environment, table_hash
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from demo.generate import generate
from orchestration.dbt_assets import DBT_STOP_SECONDS
from pipeline.processes import alive

RUN_DATE = "2026-09-30"
SCALE = 1_500
RUN = [sys.executable, "-m", "pipeline.cli", "run", "--date", RUN_DATE, "--skip-train"]
LINEAGE = {"source_load_id", "fitted_by_invocation_id", "fitted_at"}
GOLD = ("dataset_splits", "fct_transaction_features", "preprocessing_parameters", "training_set", "user_daily_features")


@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = tmp_path_factory.mktemp("fault_demo") / "demo"
    generate(demo, seed=11, scale=SCALE)
    return demo


def data_folder(root: Path, demo: Path) -> Path:
    shutil.copytree(demo, root / "demo")
    return root


def environment(data_dir: Path) -> dict[str, str]:
    return {**os.environ, **demo_environment(data_dir), "ML_FEATURES_RETRY_WAIT": "0.5", "PYTHONUNBUFFERED": "1"}


class Run:
    """A `pipeline run` subprocess in its own process group, its output collected line by line."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            RUN,
            cwd=REPO_ROOT,
            env=environment(data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []

    def read_until(self, pattern: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"the run ended before {pattern!r}:\n{self.output}")

    @property
    def run_id(self) -> str:
        found = re.search(r"\[run\] ([0-9a-f-]{36}): daily job", self.output)
        return found[1] if found else ""

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def finish(self) -> int:
        assert self.process.stdout is not None
        self.lines += list(self.process.stdout)
        return self.process.wait()

    def dbt(self) -> int:
        """The pid of the run's dbt process (a child of the pipeline)."""
        return next(pid for pid in children(self.process.pid) if b"dbt" in Path(f"/proc/{pid}/cmdline").read_bytes())

    def dbt_log(self) -> Path:
        """dbt's JSON log of the run's latest dbt invocation (dagster-dbt gives each its own target folder)."""
        found = sorted(
            (self.data_dir / "target").glob(f"dbt_models-{self.run_id[:7]}-*/dbt.log"), key=lambda p: p.stat().st_mtime
        )
        return found[-1] if found else self.data_dir / "target" / "none"

    def wait_in_dbt_log(self, found: Callable[[list[dict]], bool]) -> None:
        """Follow the run's dbt JSON log (dbt writes it event by event) until `found(events)` holds."""
        events: list[dict] = []
        offset, partial = 0, ""
        while True:
            if self.dbt_log().exists():
                with self.dbt_log().open() as log:
                    log.seek(offset)
                    text = partial + log.read()
                    offset = log.tell()
                *lines, partial = text.split("\n")
                events += [json.loads(line) for line in lines if line.strip()]
            if found(events):
                return
            assert self.process.poll() is None, f"the run ended first:\n{self.output}"
            time.sleep(0.01)

    def kill_pipeline(self) -> None:
        self.process.kill()
        self.finish()

    def kill_all(self) -> None:
        dbt = children(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.finish()
        for pid in dbt:
            wait_gone(pid)


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that just ended
            continue
    return found


def wait_gone(pid: int, timeout: float = 120.0) -> None:
    """Wait until a process that is not our child has ended (gone, or a zombie nobody reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs after {timeout} s")


def nodes_finished(count: int) -> Callable[[list[dict]], bool]:
    return lambda events: sum(e["info"]["name"] == "NodeFinished" for e in events) >= count


def publish_hook_started(events: list[dict]) -> bool:
    return any(e["info"]["name"] == "LogHookStartLine" and "on-run-end" in e["info"]["msg"] for e in events)


def query(data_dir: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    """A read of the warehouse. Right after a kill the file lock can outlive the process we waited for
    by a moment (seen once in CI: held by a pid that was not the pipeline's listed dbt child), so a
    lock is waited out for up to a minute; a lock held longer fails the test, naming the holder."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
                return connection.execute(sql, parameters or []).fetchall()
        except duckdb.IOException as error:
            if "Could not set lock" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def recorded(data_dir: Path, run_id: str) -> tuple[DagsterRunStatus, str]:
    """The run's status in the Dagster instance, and the message of its failure, if any."""
    instance = DagsterInstance.from_config(str(data_dir / "dagster"))
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    failures = [
        entry.dagster_event.message or ""
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
        if entry.dagster_event
    ]
    return run.status, " ".join(failures)


def attempts(data_dir: Path, run_id: str, step: str) -> int:
    instance = DagsterInstance.from_config(str(data_dir / "dagster"))
    [stats] = [stats for stats in instance.get_run_step_stats(run_id) if stats.step_key == step]
    return stats.attempts


def gold_tables(path: Path) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent hash of each published gold table in the published file,
    without the lineage columns that name a run's own loads and invocation."""
    return {name: table_hash(path, f"marts.{name}", LINEAGE.__contains__) for name in GOLD}


@contextmanager
def readers(data_dir: Path) -> Iterator[tuple[subprocess.Popen, subprocess.Popen]]:
    """One process polling the published file every 0.1 s, one holding a connection to it open."""
    published = str(data_dir / "published" / "gold.duckdb")
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.readers", mode, published], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        for mode in ("poll", "hold")
    ]
    try:
        yield started[0], started[1]
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)


def reader_report(process: subprocess.Popen) -> dict:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return json.loads(output.strip().splitlines()[-1])


def test_kills_at_every_moment_leave_a_truthful_run_history(demo_sources: Path, tmp_path: Path) -> None:
    data_dir = data_folder(tmp_path / "killed", demo_sources)
    with readers(data_dir) as (poller, holder):
        # A: the pipeline, during extract: the app source is loaded, the others are not
        a = Run(data_dir)
        a.read_until(r"\[extract\] app ")
        a.kill_pipeline()

        # B: dbt killed after 50 nodes: Dagster retries the step and the run succeeds; B records A
        b = Run(data_dir)
        b.read_until(r"\[build\] dbt build")
        b.wait_in_dbt_log(nodes_finished(50))
        os.kill(b.dbt(), signal.SIGKILL)
        assert b.finish() == 0, b.output
        assert f"[run] recorded run {a.run_id} as failed: its process was killed" in b.output
        status, message = recorded(data_dir, a.run_id)
        assert status == DagsterRunStatus.FAILURE and "ended without finishing the run (killed)" in message, message
        assert attempts(data_dir, b.run_id, "dbt_models") == 2
        assert re.search(r"\n  dbt_models +success .*1 retry", b.output), b.output

        # C: the pipeline and its dbt, killed together as the publish hook starts
        c = Run(data_dir)
        c.read_until(r"\[build\] dbt build")
        c.wait_in_dbt_log(publish_hook_started)
        c.kill_all()

        # D: dbt killed right after it published: retried, succeeds; D records C
        d = Run(data_dir)
        d.read_until(r"\[build\] dbt build")
        d.wait_in_dbt_log(lambda events: any(e["info"]["msg"].startswith("published ") for e in events))
        os.kill(d.dbt(), signal.SIGKILL)
        assert d.finish() == 0, d.output
        assert recorded(data_dir, c.run_id)[0] == DagsterRunStatus.FAILURE
        assert attempts(data_dir, d.run_id, "dbt_models") == 2
        [invocation] = re.findall(r"dbt invocation ([0-9a-f-]{36})\)", d.output)
        # marts holds D's last build, and so does the published file
        assert query(data_dir, "select fitted_by_invocation_id from marts.preprocessing_parameters") == [(invocation,)]
        assert f"published gold of invocation {invocation}" in d.output

        # E: the pipeline, during export
        e = Run(data_dir)
        e.read_until(r"\[export\] started")
        e.kill_pipeline()

        # F: the pipeline alone, mid-build: its dbt is stopped with it (SIGINT: it cancels its queries)
        published_before_f = query(data_dir, "select fitted_by_invocation_id from marts.preprocessing_parameters")
        f = Run(data_dir)
        f.read_until(r"\[build\] dbt build")
        f.wait_in_dbt_log(nodes_finished(60))
        dbt = f.dbt()
        f.kill_pipeline()
        wait_gone(dbt, timeout=DBT_STOP_SECONDS + 10)
        published_before_g = query(data_dir, "select fitted_by_invocation_id from marts.preprocessing_parameters")

        # G: uninterrupted; records E and F
        g = Run(data_dir)
        assert g.finish() == 0, g.output
    for killed, recorder in ((e, f), (f, g)):  # each recorded failed by the run after it
        assert recorded(data_dir, killed.run_id)[0] == DagsterRunStatus.FAILURE
        assert f"[run] recorded run {killed.run_id} as failed" in recorder.output
    assert published_before_g == published_before_f  # F's dbt was stopped before it published
    assert [path.name for path in (data_dir / "published").iterdir()] == ["gold.duckdb"]  # no temporary copy left
    statuses = [recorded(data_dir, run.run_id)[0] for run in (a, b, c, d, e, f, g)]
    assert statuses == [DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS] * 2 + [
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.SUCCESS,
    ]

    # the readers never failed, every poll saw one whole version, and the holder kept its old one
    polled, held = reader_report(poller), reader_report(holder)
    assert polled["failures"] == [] and polled["versions"] >= 2 and polled["polls"] > 50, polled
    assert held["failures"] == [] and held["reads"] > 10, held
    assert held["held_version"] != held["latest_version"]  # it kept reading the version it opened

    # the published gold equals an uninterrupted run's
    reference = data_folder(tmp_path / "reference", demo_sources)
    clean = Run(reference)
    assert clean.finish() == 0, clean.output
    assert gold_tables(data_dir / "published" / "gold.duckdb") == gold_tables(reference / "published" / "gold.duckdb")
