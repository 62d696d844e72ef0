"""The pipeline's error paths, through real `pipeline` processes: a transient error (a source not
up yet) retried by Dagster with backoff, a configuration error failing at once, a write failure
said in one line; and how errors are told apart."""

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import requests
import sqlalchemy.exc as sa_exc
from conftest import REPO_ROOT, Warehouse, demo_environment, free_port

from demo.fx_api_server import FxApiServer
from demo.generate import generate
from extract.errors import ExtractError
from pipeline.transient import transient_reason

LOCK_TEXT = (
    'IO Error: Could not set lock on file "{path}": Conflicting lock is held in /usr/bin/python3 '
    "(PID 4242). See also https://duckdb.org/docs/stable/connect/concurrency"
)
ONLY_EXTRACT = ["--skip-build", "--skip-export", "--skip-train"]


def pipeline(*args: str) -> tuple[int, str]:
    """`pipeline <args>` in its own process (the retry policy is read when the definitions load)."""
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
    )
    return completed.returncode, completed.stdout + completed.stderr


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in demo_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ML_FEATURES_RETRIES", "3")
    monkeypatch.setenv("ML_FEATURES_RETRY_WAIT", "0.1")
    return tmp_path


@pytest.fixture
def fx_api(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FxApiServer]:
    """The FX source pointed at a local API that is not up yet (start it with `.start()`)."""
    generate(data_dir / "demo", seed=3, scale=300)
    port = free_port()
    server = FxApiServer(data_dir / "demo" / "fx_rates.parquet", token="right-token", port=port)
    monkeypatch.setenv("SOURCES__FX_API__DEMO", "false")
    monkeypatch.setenv("SOURCES__FX_API__BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SOURCES__FX_API__TOKEN", "right-token")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "1")  # dlt's own HTTP retries off: Dagster's are tested
    monkeypatch.setenv("ML_FEATURES_RETRIES", "3")
    monkeypatch.setenv("ML_FEATURES_RETRY_WAIT", "10")
    yield server
    server.stop()


def test_a_source_that_comes_up_late_is_retried_with_backoff(data_dir: Path, fx_api: FxApiServer) -> None:
    # the API comes up 4 s after the fx step starts: its first attempt (within a second or two, longer
    # on a loaded machine) is refused, Dagster retries it after its backoff (10 s) and finds the API up
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", "--sources", "fx", *ONLY_EXTRACT],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines, starter = [], threading.Timer(4.0, fx_api.start)
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[extract] fx started") and not starter.is_alive() and not starter.finished.is_set():
            starter.start()
    code, output = process.wait(), "".join(lines)
    starter.join()
    assert code == 0, output
    [line] = [line for line in output.splitlines() if line.startswith("  extract_fx ")]
    assert " success " in line and "1 retry" in line, output
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        [(loaded,)] = connection.sql("select count(*) from raw_fx.rates").fetchall()
    assert f"rates {loaded:,}" in line and loaded > 0


def test_a_configuration_error_fails_at_once(
    data_dir: Path, fx_api: FxApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fx_api.start()
    monkeypatch.setenv("SOURCES__FX_API__TOKEN", "wrong-token")
    code, output = pipeline("run", "--sources", "fx", *ONLY_EXTRACT)
    assert code == 1, output
    assert fx_api.request_count == 1, output
    [line] = [line for line in output.splitlines() if line.startswith("  extract_fx ")]
    assert " failure " in line and "retr" not in line, output
    assert "fx: the API refused the bearer token in sources.fx_api.token (401 Unauthorized)" in output
    assert "(a data or configuration error: not retried)" in output and "Traceback" not in output


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


def test_an_export_that_cannot_write_is_one_line(warehouse_copy: Warehouse) -> None:
    """A file where the exports folder should be: a real write failure (chmod does not stop root)."""
    (warehouse_copy.data_dir / "exports").write_text("not a folder")
    code, output = pipeline("export")
    assert code == 1 and "Traceback" not in output, output
    line = f"export failed: cannot write {warehouse_copy.data_dir / 'exports' / 'training_set'}: Not a directory"
    assert line in output and "FAILURE" in output
    [step] = [line for line in output.splitlines() if line.startswith("  training_set_export ")]
    assert " failure " in step and "retr" not in step  # not transient: not retried


def test_a_data_folder_that_cannot_be_created_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for key, value in demo_environment(blocker / "data").items():
        monkeypatch.setenv(key, value)
    code, output = pipeline("run")
    assert code == 1 and "Traceback" not in output, output
    assert f"cannot write {blocker / 'data'}" in output and "Not a directory" in output


def test_a_run_that_skips_every_step_runs_nothing(data_dir: Path) -> None:
    """Dagster reads an empty asset selection as the whole job: skipping every step ran the extracts."""
    code, output = pipeline("run", "--skip-extract", "--skip-build", "--skip-export", "--skip-train")
    assert code == 1 and "Traceback" not in output, output
    assert "nothing to run: every step is skipped" in output
    assert not (data_dir / "warehouse.duckdb").exists()  # no extract wrote it
