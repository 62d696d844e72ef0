"""A redis-server of our own: a child process on 127.0.0.1, its data under `<data dir>/redis`.

Append-only (appendonly yes, appendfsync everysec): every write is in the append-only file when
Redis answers it, so a killed or restarted server comes back with the streams, the consumer group,
its pending messages and the idempotency keys (the OS flushes the file to disk within a second; only
a crash of the machine itself can lose that second). Debian/Ubuntu: `apt-get install redis-server`.
`ML_FEATURES_REDIS_URL` points the stack at an existing server instead.
"""

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


class RedisServerError(RuntimeError):
    """redis-server is missing or did not start: one line saying why."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise RedisServerError(
            "redis-server is not installed: `sudo apt-get install redis-server` (or set ML_FEATURES_REDIS_URL "
            "to a Redis you run)"
        )
    return found


class RedisServer:
    """`with RedisServer(port, data) as server:` a redis-server on 127.0.0.1:`port` until the block ends."""

    def __init__(self, port: int, data: Path, log: Path | None = None) -> None:
        self.port = port
        self.data = Path(data).resolve()
        self.log = log or self.data / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.log),
        ]  # fmt: skip

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL."""
        self.data.mkdir(parents=True, exist_ok=True)
        probe = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5)
        try:
            probe.ping()
            raise RedisServerError(f"{HOST}:{self.port} is in use: choose another ML_FEATURES_REALTIME_REDIS_PORT")
        except redis.ConnectionError:
            pass
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisServerError(f"redis-server ended with exit code {self.process.returncode}: see {self.log}")
            try:
                # the server answers LOADING while it reads its append-only file back
                if probe.ping():
                    return self.url
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.02)
        self.stop()
        raise RedisServerError(f"redis-server did not answer within {START_TIMEOUT:.0f} s: see {self.log}")

    def stop(self) -> None:
        """SIGTERM (Redis writes its append-only file and exits), SIGKILL after STOP_TIMEOUT."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "RedisServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
