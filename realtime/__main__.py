"""`python -m realtime` (`make realtime`): the real-time stack on this machine until Ctrl-C.

Starts redis-server (data under <data dir>/redis; not when ML_FEATURES_REDIS_URL names a Redis of
yours), the ingestion and serving API under uvicorn, the consumer, and the online store's sync from
the published gold (`python -m realtime.online_store sync --watch`: at start, then whenever the
pipeline publishes a new version), each a child in a session of its own; prints the URLs and where
the bearer token is. Ctrl-C or SIGTERM stops the service and the
consumer (SIGTERM: the consumer finishes its batch), then Redis (which writes its append-only file);
SIGKILL for whatever is still there after STOP_TIMEOUT seconds. A child that ends stops the rest.
The token is ML_FEATURES_REALTIME_TOKEN, or one made on the first start and kept in
<data dir>/realtime/token (readable by you only); it is never printed.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.processes import Stopped, raise_stopped, start_child, stop
from realtime.redis_server import RedisServer, RedisServerError
from realtime.settings import SettingError, Settings, redis_dir, token_file

PROJECT_DIR = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
# how often the online store looks for a newly published gold
SYNC_SECONDS = 30
STOP_TIMEOUT = 30.0


def token_from_file() -> str:
    """The token kept in <data dir>/realtime/token, made (0600) on the first start."""
    path = token_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def service_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "realtime.service:create_app", "--factory",
        "--host", settings.host, "--port", str(settings.port), "--no-server-header",
    ]  # fmt: skip


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service ended with exit code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/healthz did not answer within {timeout:.0f} s")


def serve(settings: Settings) -> int:
    signal.signal(signal.SIGINT, raise_stopped)
    signal.signal(signal.SIGTERM, raise_stopped)
    redis_server: RedisServer | None = None
    children: list[subprocess.Popen[bytes]] = []
    exit_code = 0
    try:
        token_hint = "ML_FEATURES_REALTIME_TOKEN (from your environment)"
        environment = dict(os.environ)
        if settings.token is None:
            environment["ML_FEATURES_REALTIME_TOKEN"] = token_from_file()
            token_hint = f'TOKEN="$(cat {token_file()})"'
        if not settings.redis_url:
            redis_server = RedisServer(settings.redis_port, redis_dir())
            environment["ML_FEATURES_REDIS_URL"] = redis_server.start()
        url = f"http://{settings.host}:{settings.port}"
        children.append(start_child(service_command(settings), PROJECT_DIR, environment))
        wait_until_up(url, children[0])
        children.append(start_child([sys.executable, "-m", "realtime.consumer"], PROJECT_DIR, environment))
        sync = [sys.executable, "-m", "realtime.online_store", "sync", "--watch", str(SYNC_SECONDS)]
        children.append(start_child(sync, PROJECT_DIR, environment))
        print(
            f"realtime: Redis      {environment['ML_FEATURES_REDIS_URL'].split('@')[-1]}"
            f"{' (data: ' + str(redis_dir()) + ')' if redis_server else ''}\n"
            f"realtime: service    {url}  (POST /transactions, /events; GET /features/<user_id>; API docs {url}/docs)\n"
            f"realtime: health     {url}/healthz   metrics {url}/metrics\n"
            f"realtime: features   synced from the published gold (make run first), again when a new one is published\n"
            f"realtime: token      {token_hint}; send it as: Authorization: Bearer $TOKEN\n"
            "realtime: Ctrl-C stops all",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        ended = next(child for child in children if child.poll() is not None)
        print(f"realtime: {' '.join(ended.args[1:4])} ended with exit code {ended.returncode}", file=sys.stderr)
        exit_code = 1
    except Stopped as signal_name:
        print(f"realtime: {signal_name}: stopping", flush=True)
    except (RuntimeError, TimeoutError, RedisServerError, SettingError) as error:
        print(f"realtime: {error}", file=sys.stderr)
        exit_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(*children, timeout=STOP_TIMEOUT)
        if redis_server:
            redis_server.stop()
    print("realtime: stopped", flush=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingError as error:
        print(f"realtime: {error}", file=sys.stderr)
        return 2
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
