"""Kills of `dbt build` leave `marts` at one published version, and the next build makes the same gold
as an uninterrupted one (issue 21: kills of dbt during the build and the publish).

A real `dbt build` subprocess (a later run date: labels mature, the training set changes) is
SIGKILLed at moments read from its own output: while an incremental model runs, while the gold
tests run, and in the on-run-end hook that publishes (write-audit-publish,
macros/publish.sql: one transaction). After each kill `marts` holds either the version published
before or the one an uninterrupted build publishes, never a mix; the kills follow one another on
the same warehouse (each build resumes from what the killed one left), and the build after the last
one publishes exactly what an uninterrupted build of the same data publishes.
"""

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Warehouse, demo_environment, table_hash

from pipeline.warehouse.dbt_runner import PROJECT_DIR, dbt_command, dbt_environment, run_dbt

GOLD = ("training_set", "fct_transaction_features", "user_daily_features", "preprocessing_parameters", "dataset_splits")
# columns that name the build (its invocation and time) rather than the data
BUILD_COLUMNS = {"fitted_by_invocation_id", "fitted_at"}
LATER = {"run_date": "2026-10-15"}
BUILD = ["build", "--exclude-resource-type", "unit_test"]
# the kill moments, in the order a build reaches them: a line of dbt's output (`--debug`: with the SQL
# it sends, logged before it runs) as a regular expression, and seconds after it. The publish is one
# multi-statement transaction (macros/publish.sql): the kills land as it is sent, while it runs, and
# after it committed (its log line), before the decision is written to monitoring.publish_log
PUBLISH_SQL = r"rename to \w+__published"  # a gold table rebuilt whole, in the publish's one transaction
KILLS = (
    (r"START sql incremental model intermediate\.int_transactions_windowed", 0.0),
    (r"START test unique_training_set_transaction_id", 0.0),
    (PUBLISH_SQL, 0.0),
    (PUBLISH_SQL, 0.01),
    (r"published \d+ gold models", 0.0),
)


def gold(duckdb_path: Path, schema: str = "marts") -> dict[str, tuple[int, str]]:
    """Row count and order-independent hash of each gold table of `schema`, build columns left out."""
    return {table: table_hash(duckdb_path, f"{schema}.{table}", BUILD_COLUMNS.__contains__) for table in GOLD}


def kill_build_at(line_pattern: str, delay: float) -> bool:
    """Run `dbt build` and SIGKILL it `delay` seconds after it printed a line matching `line_pattern`;
    whether it was still running when killed."""
    process = subprocess.Popen(
        [*dbt_command(BUILD, None, LATER), "--debug"],
        cwd=PROJECT_DIR,
        env=dbt_environment(LATER),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if re.search(line_pattern, line):
            break
    else:
        process.wait()
        pytest.fail(f"dbt build never printed {line_pattern!r} (exit {process.returncode})")
    time.sleep(delay)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return running


def test_kills_of_dbt_build_and_publish_leave_one_version_and_the_next_build_equals_an_uninterrupted_one(
    warehouse_copy: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = gold(warehouse_copy.duckdb_path)
    assert gold(warehouse_copy.duckdb_path, "marts_audit") == before

    # the same data built without interruption, in a copy
    reference_dir = tmp_path / "reference"
    shutil.copytree(warehouse_copy.data_dir, reference_dir)
    with monkeypatch.context() as patch:
        for key, value in demo_environment(reference_dir).items():
            patch.setenv(key, value)
        uninterrupted = run_dbt(BUILD, dbt_vars=LATER, quiet=True)
        assert uninterrupted.success, uninterrupted.failures
    after = gold(reference_dir / "warehouse.duckdb")
    assert after != before

    outcomes = []
    for line_pattern, delay in KILLS:
        running = kill_build_at(line_pattern, delay)
        state = gold(warehouse_copy.duckdb_path)
        assert state in (before, after), f"a mix after a kill at {line_pattern} +{delay}s"
        outcomes.append((line_pattern, delay, running, "new" if state == after else "old"))
    assert all(running for _, _, running, _ in outcomes), outcomes
    # killed before the publish: the old version; killed once it committed: the new one
    assert [state for *_, state in outcomes[:2]] == ["old", "old"], outcomes
    assert outcomes[-1][-1] == "new", outcomes

    resumed = run_dbt(BUILD, dbt_vars=LATER, quiet=True)
    assert resumed.success, resumed.failures
    assert gold(warehouse_copy.duckdb_path) == after
