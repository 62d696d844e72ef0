"""The real-time stack for tests, with real parts: a redis-server child on a free 127.0.0.1 port, the
service under uvicorn (a subprocess, the app of realtime/service.py) on another, the consumer as a
subprocess that can SIGKILL itself at a chosen moment, and the DuckDB warehouse of a data folder.

    stack = start_stack(data_dir)            # Redis + service; stack.start_consumer() when wanted
    stack.post("events", [...])              # an httpx.Response
    stack.wait_consumed()                    # every message loaded and acknowledged
    stack.close()

`realtime_stack` is the fixture on an empty data folder (no warehouse built: the consumer creates
`raw_stream`); `realtime_stack_on_warehouse` runs on a private copy of the session's built warehouse
(conftest.warehouse_copy), for tests that build or serve from it.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import redis
from conftest import free_port

from pipeline.processes import stop_process
from realtime.broker import RedisStreamsBroker
from realtime.redis_server import HOST, RedisServer
from realtime.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_TOKEN = "test-token-not-a-secret"
START_TIMEOUT = 60.0
# the consumer settings of the tests: small batches, quick to take over a dead consumer's messages
CONSUMER_SETTINGS = {
    "ML_FEATURES_REALTIME_BATCH_RECORDS": "200",
    "ML_FEATURES_REALTIME_BATCH_MILLISECONDS": "200",
    "ML_FEATURES_REALTIME_CLAIM_IDLE_MILLISECONDS": "1000",
}


@dataclass
class Stack:
    """A running stack: Redis, the service, and (once started) the consumer."""

    data_dir: Path
    environment: dict[str, str]
    redis_server: RedisServer
    url: str
    service: subprocess.Popen[bytes]
    consumers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.environment["ML_FEATURES_REALTIME_TOKEN"]

    @property
    def duckdb_path(self) -> Path:
        return Path(self.environment["ML_FEATURES_DUCKDB_PATH"])

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url)

    def settings(self) -> Settings:
        return Settings.from_env(self.environment)

    def headers(self, token: str | None = TEST_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token is not None else {}

    def post(
        self, kind: str, body: Any = None, content: bytes | None = None, token: str | None = TEST_TOKEN
    ) -> httpx.Response:
        """POST `body` (as JSON) or `content` (bytes as they are) to /<kind>."""
        if content is None:
            content = json.dumps(body).encode()
        headers = {**self.headers(token), "Content-Type": "application/json"}
        return httpx.post(f"{self.url}/{kind}", content=content, headers=headers, timeout=30)

    def get(self, path: str, token: str | None = TEST_TOKEN, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers(token), params=params, timeout=30)

    def start_consumer(self, kill_at: str | None = None, nth: int = 1, **settings: str) -> subprocess.Popen[str]:
        """The consumer as a subprocess; with `kill_at` ("module:function" or "module:Class.method", or a
        dlt milestone of extract_support.MILESTONES) it SIGKILLs itself right before the `nth` call."""
        environment = {**self.environment, **CONSUMER_SETTINGS, **settings}
        if kill_at:
            environment["ML_FEATURES_TEST_KILL_AT"] = f"{kill_at}|{nth}"
        here = str(Path(__file__).parent)
        code = f"import sys; sys.path.insert(0, {here!r}); import realtime_support; realtime_support.consumer_main()"
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.consumers.append(process)
        return process

    def backlog(self) -> dict[str, tuple[int, int | None, int]]:
        return RedisStreamsBroker(self.client(), self.settings()).backlog()

    def wait_consumed(self, consumer: subprocess.Popen[str] | None = None, timeout: float = 60.0) -> None:
        """Wait until every message of every stream was delivered and acknowledged (no lag, none pending);
        AssertionError with the consumer's output when `consumer` ends first or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(lag == 0 and pending == 0 for _, lag, pending in self.backlog().values()):
                return
            if consumer is not None and consumer.poll() is not None:
                raise AssertionError(f"the consumer ended ({consumer.returncode}): {consumer.stdout.read()}")
            time.sleep(0.1)
        raise AssertionError(f"messages still waiting after {timeout:.0f} s: {self.backlog()}")

    def wait_pending(self, consumer: subprocess.Popen[str], timeout: float = 60.0) -> int:
        """Wait until `consumer` has ended (it killed itself); its exit code."""
        try:
            return consumer.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the consumer did not stop within {timeout:.0f} s") from None

    def stop_consumers(self) -> None:
        for process in self.consumers:
            stop_process(process, timeout=30)

    def query(self, sql: str, parameters: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as connection:
            return connection.execute(sql, parameters or []).fetchall()

    def close(self) -> None:
        self.stop_consumers()
        stop_process(self.service, timeout=30)
        self.redis_server.stop()


def stack_environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """This environment, pointed at `data_dir` (warehouse, dlt state, Redis data)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ML_FEATURES_")}
    environment.update(
        {
            "ML_FEATURES_DATA_DIR": str(data_dir),
            "ML_FEATURES_DUCKDB_PATH": str(data_dir / "warehouse.duckdb"),
            "DBT_TARGET_PATH": str(data_dir / "target"),
            "ML_FEATURES_REALTIME_TOKEN": TEST_TOKEN,
        }
    )
    environment.update(settings)
    return environment


def start_stack(data_dir: Path, **settings: str) -> Stack:
    """Redis and the service on free ports, for the warehouse of `data_dir`; `settings` are environment
    variables (ML_FEATURES_REALTIME_...)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(free_port(), data_dir / "redis")
    server.start()
    port = free_port()
    environment = stack_environment(data_dir, ML_FEATURES_REDIS_URL=server.url, **settings)
    log = (data_dir / "service.log").open("ab")
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "realtime.service:create_app",
            "--factory",
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack = Stack(data_dir, environment, server, f"http://{HOST}:{port}", service)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if service.poll() is not None:
            stack.close()
            raise RuntimeError(f"the service ended ({service.returncode}): {(data_dir / 'service.log').read_text()}")
        try:
            if httpx.get(f"{stack.url}/healthz", timeout=2).status_code == 200:
                return stack
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stack.close()
    raise RuntimeError(f"the service did not answer within {START_TIMEOUT:.0f} s")


@pytest.fixture
def realtime_stack(tmp_path: Path) -> Iterator[Stack]:
    """Redis and the service on an empty data folder (the consumer: stack.start_consumer())."""
    stack = start_stack(tmp_path / "data")
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def realtime_stack_on_warehouse(warehouse_copy: Any) -> Iterator[Stack]:
    """Redis and the service on a private copy of the session's built warehouse (conftest.warehouse_copy)."""
    stack = start_stack(warehouse_copy.data_dir)
    try:
        yield stack
    finally:
        stack.close()


# ---------------------------------------------------------------- the consumer, killed at a moment


def consumer_main() -> None:
    """`python -m realtime.consumer`, SIGKILLing itself right before the call ML_FEATURES_TEST_KILL_AT names
    (`module:function|nth`, `module:Class.method|nth`, or a dlt milestone of extract_support)."""
    import importlib

    from realtime.consumer import main

    spec = os.environ.get("ML_FEATURES_TEST_KILL_AT", "")
    if spec:
        target, nth = spec.rsplit("|", 1)
        import extract_support

        if target in extract_support.MILESTONES:
            extract_support.hook_milestones(extract_support.Milestone(target, int(nth)), [])
        else:
            module_name, _, qualified = target.partition(":")
            owner_name, _, method = qualified.rpartition(".")
            module = importlib.import_module(module_name)
            owner = getattr(module, owner_name) if owner_name else module
            original = getattr(owner, method or qualified)
            calls = [0]

            def hooked(*args: object, **kwargs: object) -> object:
                calls[0] += 1
                if calls[0] == int(nth):
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(*args, **kwargs)

            setattr(owner, method or qualified, hooked)
    sys.exit(main())
