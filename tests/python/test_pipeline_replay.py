"""The daily job replayed day by day on a demo, with real dlt loads and dbt builds: what a Dagster
backfill of three partitions does, one `pipeline run --date D` (in process) per day.

One warehouse for the module (dbt builds are the slow part): day 1 runs, a bad row then breaks
day 2's validation (its run fails at once, without a retry), the row is corrected and day 2 runs
again, then day 3. The tests then read what that left (the Dagster instance, the warehouse) and
re-run days on it.
"""

import contextlib
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import TEST_SCALE, TEST_SEED, demo_environment, new_app_load, table_hash
from dagster import DagsterRunStatus

from demo.generate import generate
from orchestration.instance import get_instance
from pipeline.cli import main

DAY1, DAY2, DAY3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 4)
GOLD = [
    "marts.fct_transaction_features",
    "marts.user_daily_features",
    "marts.training_set",
    "marts.dataset_splits",
    "marts.preprocessing_parameters",
    "intermediate.int_transactions_windowed",
]
# columns that name the build rather than describe the data
BUILD_COLUMNS = {"fitted_by_invocation_id", "fitted_at"}
FAILING_TEST = "accepted_values_int_transactions_cleaned_status"


@dataclass
class Replay:
    data_dir: Path
    outputs: list[tuple[int, str]]
    hashes: dict[str, tuple[int, str]]

    @property
    def duckdb_path(self) -> str:
        return str(self.data_dir / "warehouse.duckdb")

    def query(self, sql: str, parameters: list | None = None) -> list[tuple]:
        with duckdb.connect(self.duckdb_path, read_only=True) as connection:
            return connection.execute(sql, parameters or []).fetchall()


def pipeline(*args: str) -> tuple[int, str]:
    """Run the `pipeline` command in this process; (exit code, what it printed)."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(list(args))
    return code, output.getvalue()


def gold_hashes(path: str, relations: list[str]) -> dict[str, tuple[int, str]]:
    """Row count and order-independent hash of each relation, without the columns naming the build."""
    return {relation: table_hash(path, relation, BUILD_COLUMNS.__contains__) for relation in relations}


def load_new_version(connection: duckdb.DuckDBPyConnection, row_id: str, status: str) -> None:
    """What dlt's merge does when the app changes a transaction's status: the raw row is replaced by
    the new version, stamped with a new completed load (the validated table is incremental by load)."""
    connection.execute(
        "update raw_app.transactions set status = ?, _dlt_load_id = ? where _dlt_id = ?",
        [status, new_app_load(connection), row_id],
    )


def run_day(data_dir: Path, day: dt.date) -> tuple[int, str]:
    """The demo sources as of the end of `day` (the data arrives day by day), then the day's run."""
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=day)
    return pipeline("run", "--date", str(day), "--skip-train")


def step_line(output: str, step: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(f"  {step} ")]
    return line


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    data_dir = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in demo_environment(data_dir).items():
            patch.setenv(key, value)
        outputs = [run_day(data_dir, DAY1)]
        warehouse = str(data_dir / "warehouse.duckdb")
        with duckdb.connect(warehouse) as connection:  # the app starts sending a status the contract does not know
            [(row_id, status)] = connection.sql(
                "select _dlt_id, status from raw_app.transactions order by _dlt_id limit 1"
            ).fetchall()
            load_new_version(connection, row_id, "disputed")
        outputs.append(run_day(data_dir, DAY2))  # day 2's validation fails
        with duckdb.connect(warehouse) as connection:  # the app corrects the row
            load_new_version(connection, row_id, status)
        outputs.append(run_day(data_dir, DAY2))  # day 2 again
        outputs.append(run_day(data_dir, DAY3))
        yield Replay(data_dir, outputs, gold_hashes(str(data_dir / "warehouse.duckdb"), GOLD))


def test_a_failed_validation_fails_at_once_and_the_day_runs_again(replay: Replay) -> None:
    (first, _), (failed, failure), (again, _), (last, _) = replay.outputs
    assert (first, failed, again, last) == (0, 1, 0, 0), failure
    # the data error: one attempt, no retry, the failing test named, the quarantine counts, nothing exported
    dbt = step_line(failure, "dbt_models")
    assert " failure " in dbt and "retr" not in dbt, failure
    assert "validation failed" in failure and FAILING_TEST in failure and "1 failing row" in failure
    quarantine = r"quarantined \(intermediate.*\n\s+app\.transactions\s+[\d,]+ of [\d,]+ raw rows: \w+ [\d,]+"
    assert re.search(quarantine, failure)
    assert "[export]" not in failure
    # what Dagster recorded: a run per day (partition), in order, day 2 twice
    runs = sorted(
        get_instance().get_runs(),
        key=lambda run: run.run_id and get_instance().get_run_record_by_id(run.run_id).create_timestamp,
    )
    assert [(run.tags["dagster/partition"], run.status) for run in runs] == [
        (str(DAY1), DagsterRunStatus.SUCCESS),
        (str(DAY2), DagsterRunStatus.FAILURE),
        (str(DAY2), DagsterRunStatus.SUCCESS),
        (str(DAY3), DagsterRunStatus.SUCCESS),
    ]


def test_each_day_builds_the_days_its_new_rows_affect(replay: Replay) -> None:
    """Day 1 builds the history before it; later days rebuild from their earliest late or updated row."""
    outputs = [output for _, output in replay.outputs]
    assert f"[build] dbt build for 1970-01-01 .. {DAY1}" in outputs[0]
    for output, day in ((outputs[2], DAY2), (outputs[3], DAY3)):
        ranges = [line for line in output.splitlines() if line.startswith("[build] dbt build for ")]
        assert len(ranges) == 1 and ranges[0].split(" (")[0].endswith(f".. {day}"), ranges
    [(first_day, last_day)] = replay.query(
        "select min(transaction_date), max(transaction_date) from marts.fct_transaction_features"
    )
    assert first_day < DAY1 and last_day == DAY3


def test_rerunning_days_is_idempotent(replay: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(replay.data_dir).items():
        monkeypatch.setenv(key, value)
    code, output = pipeline("run", "--date", str(DAY3), "--skip-extract", "--skip-export", "--skip-train")
    assert code == 0, output
    assert gold_hashes(replay.duckdb_path, GOLD) == replay.hashes  # the same day twice
    # an older day after a newer one: it rebuilds from itself to the newest day built, and the gold
    # stays as of that day (it never goes back in time: a backfill's retry can run after later days)
    code, output = pipeline("run", "--date", str(DAY2), "--skip-extract", "--skip-export", "--skip-train")
    assert code == 0 and f"dbt build for {DAY2} .. {DAY3} (run_date {DAY3})" in output, output
    assert gold_hashes(replay.duckdb_path, GOLD) == replay.hashes
