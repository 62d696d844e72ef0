"""Shared fixtures: a real demo data set, extracted by dlt and built by dbt, at a small scale; a headless
chromium for the browser tests."""

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from demo.generate import generate
from extract.load import SOURCES, SourceLoad, load_source
from pipeline.processes import running_processes
from pipeline.warehouse.dbt_runner import DbtSummary, run_dbt

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SCALE = int(os.environ.get("ML_FEATURES_TEST_SCALE", "3000"))
TEST_SEED = 7
RUN_DATE = "2026-09-30"
# screenshots of the browser tests (CI keeps them)
ARTIFACTS_DIR = Path(os.environ.get("ML_FEATURES_TEST_ARTIFACTS", REPO_ROOT / "data" / "test-artifacts"))
VIEWPORT = {"width": 1600, "height": 1000}


# The longest test files (a CI run's durations), started first: xdist (`--dist loadfile
# --no-loadscope-reorder`) hands whole files to its workers in this order, so no long file starts
# last and runs alone while the other worker idles. Files not listed follow in their usual order.
LONGEST_FILES_FIRST = (
    "test_fault_pipeline.py",
    "test_orchestration_backfill.py",
    "test_orchestration_retries.py",
    "test_bigquery_emulator.py",
    "test_pipeline_replay.py",
    "test_fault_dbt_kill.py",
    "test_pipeline_alerts.py",
    "test_incremental.py",
    "test_fault_dbt_loads.py",
    "test_realtime_skew.py",
    "test_fault_extract.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


@dataclass
class Warehouse:
    """A built warehouse: where it is, what dlt loaded and what dbt built."""

    data_dir: Path
    duckdb_path: Path
    loads: list[SourceLoad]
    build: DbtSummary

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.sql(sql).fetchall()


def demo_environment(data_dir: Path) -> dict[str, str]:
    """Environment variables that point every source and the warehouse at `data_dir`."""
    return {
        "ML_FEATURES_DATA_DIR": str(data_dir),
        "ML_FEATURES_DUCKDB_PATH": str(data_dir / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(data_dir / "target"),
    }


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """Generate demo data, extract every source with dlt and `dbt build`, once per test session."""
    data_dir = tmp_path_factory.mktemp("warehouse")
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in demo_environment(data_dir).items():
            patch.setenv(key, value)
        loads = [load_source(name) for name in SOURCES]
        build = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
        yield Warehouse(data_dir, data_dir / "warehouse.duckdb", loads, build)


def table_hash(
    duckdb_path: Path | str, relation: str, leave_out: Callable[[str], bool] | None = None
) -> tuple[int, str]:
    """Row count and an order-independent sha256 of a relation's rows (a table or a subquery); with
    `leave_out`, a table's columns for which `leave_out(name)` is true are left out (e.g. those naming
    the load or the build rather than the data)."""
    with duckdb.connect(str(duckdb_path), read_only=True) as connection:
        if leave_out is not None:
            schema, table = relation.split(".")
            kept = [
                f'"{name}"'
                for (name,) in connection.execute(
                    "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                    "order by ordinal_position",
                    [schema, table],
                ).fetchall()
                if not leave_out(name)
            ]
            relation = f"(select {', '.join(kept)} from {relation})"
        [(rows, digest)] = connection.sql(
            "select count(*), sha256(coalesce(string_agg(md5(cast(r as varchar)), ',' "
            f"order by md5(cast(r as varchar))), '')) from {relation} as r"
        ).fetchall()
    return rows, digest


@pytest.fixture
def warehouse_copy(built_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    """A private copy of the built warehouse (DuckDB file, demo sources, dlt state) for tests that change it."""
    shutil.copytree(built_warehouse.data_dir, tmp_path / "data")  # dbt's target too: partial parsing
    data_dir = tmp_path / "data"
    for key, value in demo_environment(data_dir).items():
        monkeypatch.setenv(key, value)
    return Warehouse(data_dir, data_dir / "warehouse.duckdb", built_warehouse.loads, built_warehouse.build)


def new_app_load(connection: duckdb.DuckDBPyConnection) -> str:
    """A completed dlt load of the app source, as dlt records one (its id is the unix time)."""
    load_id = f"{time.time():.6f}"
    connection.execute(
        "insert into raw_app._dlt_loads (load_id, schema_name, status, inserted_at, schema_version_hash) "
        "select ?, schema_name, 0, now(), schema_version_hash from raw_app._dlt_loads limit 1",
        [load_id],
    )
    return load_id


# a newer version of a transaction the published batch layer serves, whose created_at moved it to the
# last built day, from which the speed layer computes the features: both layers serve it
MOVED_TRANSACTION = """
insert into raw_app.transactions
select * replace (
    strftime((select max(transaction_date) from marts.realtime_transaction_features) + interval 12 hour,
        '%Y-%m-%d %H:%M:%S') as created_at,
    strftime(now(), '%Y-%m-%d %H:%M:%S') as updated_at,
    $load_id as _dlt_load_id,
    'moved-' || _dlt_id as _dlt_id
)
from raw_app.transactions
where cast(transaction_id as varchar) = (
    select transaction_id from marts.realtime_transaction_features
    where served_from = 'batch' order by transaction_date desc limit 1
)
limit 1
"""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reachable(edges: list[list[str]], start: str) -> set[str]:
    """`start` and every node the (parent, child) `edges` lead to from it."""
    children: dict[str, list[str]] = {}
    for parent, child in edges:
        children.setdefault(parent, []).append(child)
    seen, queue = {start}, deque([start])
    while queue:
        for child in children.get(queue.popleft(), []):
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return seen


# the browser tests (test_docs_site, test_dagster_ui) drive Debian's `chromium` headless over the DevTools
# protocol on a pipe (`--remote-debugging-pipe`), so they need no Python browser driver
def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


class HeadlessChromium:
    """Chromium headless, driven with DevTools protocol messages on fds 3 (to it) and 4 (from it)."""

    def __init__(self, binary: str, profile_dir: Path, log_file: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def pipes_to_fds_3_and_4() -> None:  # runs in the child, between fork and exec
            read_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        flags += [f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "--hide-scrollbars"]
        flags += [f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}", "about:blank"]
        self.log_file = log_file
        with log_file.open("wb") as log:
            # python's own fds are not inheritable, so only 0-4 reach chromium
            self.process = subprocess.Popen(
                [binary, *flags],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=False,
                preexec_fn=pipes_to_fds_3_and_4,
                start_new_session=True,
            )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._last_id = 0
        self.session = ""

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"chromium did not answer in time; its log: {self.log_tail()}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe; its log: {self.log_tail()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        """Send one command (to the attached page once there is one) and return its result."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._last_id:  # anything else is an event: not needed here
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def open_page(self) -> None:
        page = next(target for target in self.send("Target.getTargets")["targetInfos"] if target["type"] == "page")
        self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails'].get('exception', result)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"the page never showed {what}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-1500:] if self.log_file.exists() else ""

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the session we started: chromium and its helpers
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[HeadlessChromium]:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is missing: .ci/run installs it with apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); CI always runs this test")
    browser = HeadlessChromium(binary, tmp_path / "chromium-profile", tmp_path / "chromium.log")
    try:
        browser.open_page()
        yield browser
    finally:
        browser.close()


def descendants(pid: int) -> dict[int, str]:
    """PID -> command line of each living process under `pid` (read from /proc)."""
    parents = {process.pid: process.parent for process in running_processes()}
    found: dict[int, str] = {}
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        for child in frontier:
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
    return found
