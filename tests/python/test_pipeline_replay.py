"""`pipeline backfill/run/stream/status` on a demo replayed day by day, with real dlt loads and dbt builds.

One warehouse for the module (dbt builds are the slow part): day 1 is backfilled, a bad row then
breaks day 2's validation (the backfill stops there), the row is removed and the same backfill
command resumes. The tests then read what that left and re-run days on it.
"""

import contextlib
import datetime as dt
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import REPO_ROOT, TEST_SCALE, TEST_SEED, demo_environment, new_app_load, table_hash

from demo.generate import generate
from pipeline.cli import main

DAY1, DAY2, DAY3 = dt.date(2026, 3, 2), dt.date(2026, 3, 3), dt.date(2026, 3, 4)
BACKFILL = [
    "backfill",
    "--start",
    str(DAY1),
    "--end",
    str(DAY3),
    "--demo",
    "--seed",
    str(TEST_SEED),
    "--scale",
    str(TEST_SCALE),
    "--skip-train",
]
GOLD = [
    "marts.fct_transaction_features",
    "marts.user_daily_features",
    "marts.training_set",
    "marts.dataset_splits",
    "marts.preprocessing_parameters",
    "intermediate.int_transactions_windowed",
]
DAY_PARTITIONED = ["marts.user_daily_features", "intermediate.int_transactions_windowed"]
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


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    data_dir = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in demo_environment(data_dir).items():
            patch.setenv(key, value)
        patch.setenv("ML_FEATURES_RETRY_WAIT", "0.1")
        outputs = [pipeline(*BACKFILL[:4], str(DAY1), *BACKFILL[5:])]  # day 1 only
        warehouse = str(data_dir / "warehouse.duckdb")
        with duckdb.connect(warehouse) as connection:  # the app starts sending a status the contract does not know
            [(row_id, status)] = connection.sql(
                "select _dlt_id, status from raw_app.transactions order by _dlt_id limit 1"
            ).fetchall()
            load_new_version(connection, row_id, "disputed")
        outputs.append(pipeline(*BACKFILL))  # day 2's validation stops the backfill
        with duckdb.connect(warehouse) as connection:  # the app corrects the row
            load_new_version(connection, row_id, status)
        outputs.append(pipeline(*BACKFILL))  # the same command resumes
        yield Replay(data_dir, outputs, gold_hashes(str(data_dir / "warehouse.duckdb"), GOLD))


def test_backfill_fails_fast_on_validation_and_resumes(replay: Replay) -> None:
    (first, _), (failed, failure), (resumed, resume) = replay.outputs
    assert (first, failed, resumed) == (0, 1, 0), failure
    # the data error: one run, no retry, the failing test named, the quarantine counts, nothing exported
    assert "validation failed" in failure and FAILING_TEST in failure
    assert "1 failing row" in failure and "(transient)" not in failure
    quarantine = r"quarantined \(intermediate.*\n\s+app\.transactions\s+[\d,]+ of [\d,]+ raw rows: \w+ [\d,]+"
    assert re.search(quarantine, failure)
    assert f"backfill stopped at {DAY2}" in failure and f"---- {DAY3}" not in failure
    assert "[export]" not in failure
    assert f"{DAY1}  done earlier" in failure and f"{DAY1}  done earlier" in resume
    assert f"---- {DAY2}" in resume and f"---- {DAY3}" in resume and "backfill complete: 2 day(s) run" in resume
    days = replay.query("select day, status from monitoring.backfill_days order by day")
    assert days == [(DAY1, "done"), (DAY2, "done"), (DAY3, "done")]
    runs = replay.query("select run_date, status from monitoring.pipeline_runs order by started_at")
    assert runs == [(DAY1, "success"), (DAY2, "failed"), (DAY2, "success"), (DAY3, "success")]


def test_backfill_builds_the_affected_days(replay: Replay) -> None:
    """Day 1 builds the history before it; later days rebuild from their earliest late or updated row."""
    ranges = dict(
        replay.query(
            "select run_date, dbt_vars from monitoring.pipeline_runs where status = 'success' order by started_at"
        )
    )
    assert '"from_date": "1970-01-01"' in ranges[DAY1] and f'"to_date": "{DAY1}"' in ranges[DAY1]
    for day in (DAY2, DAY3):
        assert f'"to_date": "{day}"' in ranges[day]
    [(first_day, last_day)] = replay.query(
        "select min(transaction_date), max(transaction_date) from marts.fct_transaction_features"
    )
    assert first_day < DAY1 and last_day == DAY3


def test_monitoring_keeps_runs_stages_rows_and_links_loads_to_dbt(replay: Replay) -> None:
    stages = replay.query("select stage, count(*) from monitoring.pipeline_stage_runs group by all order by all")
    assert dict(stages) == {"extract": 4, "build": 4, "export": 2}
    [(orphans,)] = replay.query(
        "select count(*) from monitoring.pipeline_stage_runs where run_id not in "
        "(select run_id from monitoring.pipeline_runs)"
    )
    assert orphans == 0
    lineage = replay.query(
        "select source, count(distinct load_id), count(distinct dbt_invocation_id) from monitoring.load_lineage "
        "where run_status = 'success' group by all order by all"
    )
    assert {source for source, *_ in lineage} == {"app", "chargebacks", "events", "fx"}
    assert all(loads >= 1 and invocations >= 1 for _, loads, invocations in lineage)
    [(invocation,)] = replay.query(
        "select dbt_invocation_id from monitoring.pipeline_runs where run_date = ? and status = 'success'", [DAY3]
    )
    tests = dict(
        replay.query(
            "select status, count(*) from monitoring.dbt_node_results where invocation_id = ? "
            "and resource_type = 'test' group by all",
            [invocation],
        )
    )
    assert tests.get("pass", 0) >= 40 and not {"fail", "error"} & set(tests)
    failed = replay.query("select unique_id, status, failures from monitoring.dbt_node_results where status = 'fail'")
    assert [(uid.split(".")[2][: len(FAILING_TEST)], status, failures) for uid, status, failures in failed] == [
        (FAILING_TEST, "fail", 1)
    ]
    rows = dict(
        replay.query(
            "select name, (rows_in, rows_out) from monitoring.model_row_counts where invocation_id = ?", [invocation]
        )
    )
    [(features,)] = replay.query("select count(*) from marts.fct_transaction_features")
    assert rows["fct_transaction_features"][1] == features > 0 and rows["fct_transaction_features"][0] > 0
    # raw rows in; a view's rows are not counted (counting it runs it), the validated table's are
    assert rows["stg_app__transactions"][0] > 0 and rows["stg_app__transactions"][1] is None
    assert rows["stg_app__transactions"][0] >= rows["int_transactions_validated"][1] > 0


PROM_LINE = re.compile(r'^ml_features_[a-z_]+(\{([a-z_]+="[^"\n]*",?)*\})? -?[0-9.e+-]+$')


def test_metrics_file_is_prometheus_text(replay: Replay) -> None:
    text = (replay.data_dir / "metrics" / "pipeline.prom").read_text()
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge")
            declared.add(name)
        elif not line.startswith("# HELP "):
            assert PROM_LINE.match(line), line
            assert line.split("{")[0].split(" ")[0] in declared, line
    for metric in (
        'ml_features_rows_loaded_total{source="events"}',
        "ml_features_run_failures_total 1",
        'ml_features_stage_duration_seconds{stage="build"',
        'ml_features_source_freshness_lag_seconds{source="fx"}',
        'ml_features_alerts_open{rule="error_rate"} 1',
        'ml_features_model_rows{model="training_set"',
    ):
        assert metric in text, metric


def test_report_is_one_self_contained_page(replay: Replay) -> None:
    html = (replay.data_dir / "reports" / "index.html").read_text()
    assert html.count("<svg") >= 8  # runs, rows, gold tables, tests, quarantine, feature histograms
    assert "<script" not in html and not re.search(r"""(src|href)=["']?https?:""", html)
    for heading in (
        "Runs",
        "Tests of the latest build",
        "Quarantined rows",
        "Source freshness",
        "Feature distributions",
    ):
        assert heading in html
    assert FAILING_TEST not in html  # the latest build passed


def test_rerunning_days_is_idempotent_and_no_new_data_skips(replay: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(replay.data_dir).items():
        monkeypatch.setenv(key, value)
    code, output = pipeline("run", "--date", str(DAY3), "--skip-train")
    assert code == 0 and "SKIPPED" in output and "no new data" in output and "[build]" not in output
    code, output = pipeline("run", "--date", str(DAY3), "--skip-extract", "--skip-export", "--skip-train")
    assert code == 0, output
    assert gold_hashes(replay.duckdb_path, GOLD) == replay.hashes  # the same day twice
    code, output = pipeline("run", "--date", str(DAY2), "--skip-extract", "--skip-export", "--skip-train")
    assert code == 0 and f"dbt build for {DAY2} .. {DAY2}" in output, output
    assert gold_hashes(replay.duckdb_path, DAY_PARTITIONED) == {r: replay.hashes[r] for r in DAY_PARTITIONED}
    [(skipped,)] = replay.query("select count(*) from monitoring.pipeline_runs where status = 'skipped'")
    assert skipped == 1


def test_status_shows_runs_freshness_and_alerts(replay: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(replay.data_dir).items():
        monkeypatch.setenv(key, value)
    code, output = pipeline("status", "--runs", "20", "--strict")
    assert code == 3, output  # the failed day-2 run keeps the error-rate alert open
    assert output.count(" backfill ") >= 4 and "failed" in output and "validation failed" in output
    for source in ("app", "events", "fx", "chargebacks"):
        assert re.search(rf"\n  {source}\s+ok\s+lag", output), output
    assert "backfill (dev): 3 day(s) done, 0 failed" in output
    assert "ALERT [error_rate]" in output


def test_stream_loads_micro_batches_served_by_the_realtime_view(
    replay: Replay, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in demo_environment(replay.data_dir).items():
        monkeypatch.setenv(key, value)
    generate(replay.data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=DAY3 + dt.timedelta(days=2))
    code, output = pipeline("stream", "--interval", "0.1", "--max-batches", "2", "--no-report")
    assert code == 0, output
    first = re.search(r"batch 1: events \+[\d,]+, app \+[\d,]+ rows .* \+ ([\d,]+) speed-layer rows", output)
    assert first and int(first.group(1).replace(",", "")) > 0, output
    assert "batch 2: no new data" in output and "stopped after 2 batch(es), 1 with new data" in output
    [(streamed,)] = replay.query("select count(*) from monitoring.pipeline_runs where command = 'stream'")
    assert streamed == 1  # batches without new data are not recorded


def test_stream_stops_cleanly_after_the_current_batch_on_sigint(replay: Replay) -> None:
    generate(replay.data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=DAY3 + dt.timedelta(days=3))
    environment = {**os.environ, **demo_environment(replay.data_dir), "PYTHONUNBUFFERED": "1"}
    command = [str(Path(sys.executable).parent / "pipeline"), "stream", "--interval", "60", "--no-report"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[extract] started"):
            process.send_signal(signal.SIGINT)  # in the middle of batch 1
            break
    started = time.monotonic()
    rest, _ = process.communicate(timeout=120)
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "SIGINT: stopping after the current batch" in output
    assert re.search(r"batch 1: events \+[\d,]+", output), output  # the batch finished and loaded its rows
    assert "stopped after 1 batch(es), 1 with new data" in output
    assert time.monotonic() - started < 60  # did not wait for the next interval
