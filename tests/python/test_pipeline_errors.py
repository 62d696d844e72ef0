"""The pipeline's error paths: transient errors retried with backoff and said plainly, data and
configuration errors failing at once, a warehouse locked by another process named with its PID."""

import contextlib
import io
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
import requests
import sqlalchemy.exc as sa_exc
from conftest import Warehouse, demo_environment

from demo.fx_api_server import FxApiServer
from demo.generate import generate
from extract.errors import ExtractError
from pipeline import retry, stages
from pipeline.cli import main
from pipeline.dbt_runner import DbtSummary
from pipeline.retry import transient_reason

NO_STAGES = ["--skip-extract", "--skip-build", "--skip-export", "--skip-train"]
LOCK_TEXT = (
    'IO Error: Could not set lock on file "{path}": Conflicting lock is held in /usr/bin/python3 '
    "(PID 4242). See also https://duckdb.org/docs/stable/connect/concurrency"
)


def pipeline(*args: str) -> tuple[int, str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(list(args))
    return code, output.getvalue()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in demo_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ML_FEATURES_RETRIES", "3")
    monkeypatch.setenv("ML_FEATURES_RETRY_WAIT", "0.1")
    return tmp_path


@contextlib.contextmanager
def lock_held(path: Path, seconds: float = 60) -> Iterator[subprocess.Popen]:
    """Another process with a write connection to `path`, for `seconds` at most."""
    code = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep({seconds})"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_locked_warehouse_is_retried_then_named_with_the_holder(data_dir: Path) -> None:
    warehouse = data_dir / "warehouse.duckdb"
    with lock_held(warehouse) as holder:
        code, output = pipeline("run", *NO_STAGES)
    assert code == 1
    assert output.count("(transient): retrying in") == 2 and "retrying in 0.2 s (attempt 3 of 3)" in output
    assert f"the warehouse {warehouse} is locked by another process (PID {holder.pid}, " in output
    assert "gave up after 3 attempts over 0.3 s. Stop that process or wait for it to finish, then run again." in output
    assert "FAILED" in output and "Traceback" not in output
    assert "ml_features_last_run_success 0" in (data_dir / "metrics" / "pipeline.prom").read_text()
    # the failed run was kept aside and is recorded by the next run that gets the lock
    assert (data_dir / "monitoring" / "unrecorded_runs.jsonl").exists()
    code, output = pipeline("run", *NO_STAGES)
    assert code == 0 and "recorded 1 earlier run(s)" in output
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        runs = connection.sql("select status, message from monitoring.pipeline_runs order by started_at").fetchall()
    assert [status for status, _ in runs] == ["failed", "success"] and f"PID {holder.pid}" in runs[0][1]


def test_a_lock_released_while_retrying_lets_the_run_go_on(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_FEATURES_RETRIES", "6")
    monkeypatch.setenv("ML_FEATURES_RETRY_WAIT", "0.4")
    with lock_held(data_dir / "warehouse.duckdb", seconds=2.0):
        code, output = pipeline("run", *NO_STAGES)
    assert code == 0, output
    assert "is locked by another process" in output and "SUCCESS" in output


def test_a_lock_during_dbt_build_is_retried(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_dbt(args: list[str], **_: object) -> DbtSummary:
        calls.append(args)
        if len(calls) == 1:
            lock = LOCK_TEXT.format(path=data_dir / "warehouse.duckdb")
            return DbtSummary(success=False, failures=[f"dbt build wrote no results (exit 2) Runtime Error {lock}"])
        return DbtSummary(success=True, invocation_id="00000000-0000-0000-0000-000000000000")

    monkeypatch.setattr(stages, "run_dbt", fake_dbt)
    code, output = pipeline("run", "--skip-extract", "--skip-export", "--skip-train")
    assert code == 0, output
    assert len(calls) == 2 and calls[0][:3] == ["build", "--exclude-resource-type", "unit_test"]
    assert "[build] dbt build: the warehouse" in output and "(PID 4242, /usr/bin/python3) (transient)" in output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def fx_api(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FxApiServer]:
    """The FX source pointed at a local API that is not up yet (start it with `.start()`)."""
    generate(data_dir / "demo", seed=3, scale=300)
    port = free_port()
    server = FxApiServer(data_dir / "demo" / "fx_rates.parquet", token="right-token", port=port)
    monkeypatch.setenv("SOURCES__FX_API__DEMO", "false")
    monkeypatch.setenv("SOURCES__FX_API__BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SOURCES__FX_API__TOKEN", "right-token")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "1")  # dlt's own HTTP retries off: the stage's are tested
    monkeypatch.setenv("ML_FEATURES_RETRIES", "5")
    monkeypatch.setenv("ML_FEATURES_RETRY_WAIT", "0.5")
    yield server
    server.stop()


def test_a_source_that_comes_up_late_is_retried_with_backoff(
    data_dir: Path, fx_api: FxApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    def wait_then_start(seconds: float) -> None:  # the API comes up while the pipeline waits to retry
        waits.append(seconds)
        fx_api.start()
        time.sleep(seconds)

    monkeypatch.setattr(retry, "time", SimpleNamespace(sleep=wait_then_start))
    code, output = pipeline("run", "--sources", "fx", "--skip-build", "--skip-export", "--skip-train")
    assert code == 0, output
    assert (
        "[extract] extract fx: connection failed (ConnectionError) (transient): retrying in 0.5 s (attempt 2 of 5)"
        in output
    )
    assert "rates" in output and "SUCCESS" in output and waits == [0.5]
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        [(retries, rows)] = connection.sql(
            "select retries, rows_out from monitoring.pipeline_stage_runs where stage = 'extract'"
        ).fetchall()
        [(loaded,)] = connection.sql("select count(*) from raw_fx.rates").fetchall()
    assert retries >= 1 and rows == loaded > 0


def test_a_configuration_error_fails_at_once(
    data_dir: Path, fx_api: FxApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx_api.start()
    monkeypatch.setenv("SOURCES__FX_API__TOKEN", "wrong-token")
    code, output = pipeline("run", "--sources", "fx", "--skip-build", "--skip-export", "--skip-train")
    assert code == 1
    assert "retrying" not in output and fx_api.request_count == 1
    assert "extract failed: fx: the API refused the bearer token in sources.fx_api.token (401 Unauthorized)" in output
    assert "(a data or configuration error: not retried)" in output


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code, response.reason = status, "Reason"
    return requests.HTTPError(f"{status}", response=response)


def wrapped(cause: BaseException) -> ExtractError:
    try:
        raise ExtractError("source: something failed") from cause
    except ExtractError as error:
        return error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (wrapped(http_error(503)), True),
        (wrapped(http_error(429)), True),
        (wrapped(http_error(401)), False),
        (wrapped(http_error(404)), False),
        (wrapped(requests.ConnectionError("refused")), True),
        (wrapped(ConnectionRefusedError(111, "Connection refused")), True),
        (
            wrapped(
                sa_exc.OperationalError("connect", {}, Exception("could not connect to server: Connection refused"))
            ),
            True,
        ),
        (wrapped(sa_exc.OperationalError("select", {}, Exception("no such table: transactions"))), False),
        (wrapped(duckdb.IOException(LOCK_TEXT.format(path="/w.duckdb"))), True),
        (wrapped(ValueError("amount is not a number")), False),
    ],
)
def test_transient_errors_are_told_from_data_errors(error: BaseException, transient: bool) -> None:
    assert (transient_reason(error) is not None) == transient


@pytest.fixture
def built_copy(warehouse_copy: Warehouse, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    monkeypatch.setenv("ML_FEATURES_RETRIES", "3")
    monkeypatch.setenv("ML_FEATURES_RETRY_WAIT", "0.1")
    return warehouse_copy


def last_run(warehouse: Warehouse) -> tuple[str, str, str]:
    [row] = warehouse.query(
        "select command, status, message from monitoring.pipeline_runs order by started_at desc limit 1"
    )
    return row


@pytest.mark.parametrize("command", [["run", "--skip-extract", "--skip-build", "--skip-train"], ["export"]])
def test_an_export_that_cannot_write_is_one_line_and_recorded(built_copy: Warehouse, command: list[str]) -> None:
    """A file where the exports folder should be: a real write failure (chmod does not stop root)."""
    (built_copy.data_dir / "exports").write_text("not a folder")
    code, output = pipeline(*command)
    assert code == 1 and "Traceback" not in output, output
    line = f"export failed: cannot write {built_copy.data_dir / 'exports' / 'training_set'}: Not a directory"
    assert line in output and "FAILED" in output
    assert last_run(built_copy) == (command[0], "failed", line)
    assert "ml_features_last_run_success 0" in (built_copy.data_dir / "metrics" / "pipeline.prom").read_text()


def test_a_data_folder_that_cannot_be_created_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for key, value in demo_environment(blocker / "data").items():
        monkeypatch.setenv(key, value)
    code, output = pipeline("run", *NO_STAGES)
    assert code == 1 and "Traceback" not in output, output
    assert f"the run failed: cannot write {blocker / 'data' / 'monitoring' / 'runs'}: Not a directory" in output
    assert "FAILED" in output and "the run could not be recorded" in output


def test_a_standalone_export_waits_out_a_lock(built_copy: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_FEATURES_RETRIES", "6")
    monkeypatch.setenv("ML_FEATURES_RETRY_WAIT", "0.4")
    with lock_held(built_copy.duckdb_path, seconds=2.0):
        code, output = pipeline("export")
    assert code == 0, output
    assert "is locked by another process" in output and "(transient): retrying in" in output
    assert "training_set version" in output and "Traceback" not in output
    assert last_run(built_copy)[:2] == ("export", "success")


def test_status_tells_a_killed_run_from_one_a_lock_kept_out_of_the_run_log(data_dir: Path) -> None:
    """Two runs left `running` rows: one was killed (its lock is free), one finished while the
    warehouse was locked (kept in unrecorded_runs.jsonl). Status says which is which."""
    import dataclasses
    import datetime as dt
    import json

    from pipeline.run_journal import started_record
    from pipeline.run_log import RunRecord, ensure_schema, insert_run, pending_file

    killed = RunRecord(command="run", target="dev", run_date=dt.date(2026, 9, 30))
    kept = RunRecord(command="run", target="dev", run_date=dt.date(2026, 9, 30))
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        ensure_schema(connection)
        for run in (killed, kept):
            insert_run(connection, started_record(run))
    pending_file().parent.mkdir(parents=True, exist_ok=True)
    finished = dataclasses.replace(kept, status="failed", ended_at=kept.started_at)
    pending_file().write_text(json.dumps(dataclasses.asdict(finished), default=str) + "\n")
    code, output = pipeline("status")
    assert code == 0, output
    assert re.search(rf"{killed.run_id} .* killed ", output) and re.search(rf"{kept.run_id} .* failed ", output)
    assert "ended without recording an outcome" in output and "kept in" in output
