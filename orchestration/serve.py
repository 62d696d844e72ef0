"""`make dagster`: the Dagster UI (webserver) and daemon (schedule, sensor, backfills, run queue) on
127.0.0.1, with DAGSTER_HOME under the data folder and telemetry off, until Ctrl-C.

    python -m orchestration.serve [--port 3000]

Two processes, each in a session of its own so a signal reaches it (and the code server it starts)
only when we send one: `dagster-webserver -m orchestration.definitions` and `dagster-daemon run -m
orchestration.definitions`. Separate processes rather than `dagster dev`: a test can start the
daemon alone, and stopping them leaves no code server behind (`dagster dev` leaves its code server
to time out). On Ctrl-C or SIGTERM both process groups get SIGTERM, then SIGKILL for whatever is
still there after 20 seconds (pipeline/processes.py). A run in progress is stopped with them: the run's process
is a child of a code server, in its group.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from orchestration.dbt_project import manifest_path
from orchestration.instance import dagster_home, get_instance
from pipeline.processes import Output, Stopped, raise_stopped, start_child, stop

MODULE = "orchestration.definitions"
HOST = "127.0.0.1"
PROJECT_DIR = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_TIMEOUT = 180.0


def environment() -> dict[str, str]:
    """This environment with DAGSTER_HOME (`<data dir>/dagster` by default) and telemetry off."""
    return {**os.environ, "DAGSTER_HOME": str(dagster_home()), "DAGSTER_DISABLE_TELEMETRY": "1"}


def prepare() -> None:
    """Make what the processes would otherwise race to create on a first start: dbt's manifest (each
    code server imports the definitions, which `dbt parse` into one target folder) and the instance's
    SQLite storage (each process creates it: 'alembic_version has more than one head')."""
    manifest_path()
    with get_instance():
        pass


def start(command: list[str], output: Output = None) -> subprocess.Popen[bytes]:
    """`command` in a new session (its own process group), output to `output` (default: ours)."""
    prepare()
    return start_child(command, PROJECT_DIR, environment(), output)


def start_webserver(port: int, output: Output = None) -> subprocess.Popen[bytes]:
    """The Dagster UI on http://127.0.0.1:<port> (see `url`); `wait_until_up` waits for it."""
    command = [str(BIN / "dagster-webserver"), "-m", MODULE, "-d", str(PROJECT_DIR), "-h", HOST, "-p", str(port)]
    return start(command, output)


def start_daemon(output: Output = None) -> subprocess.Popen[bytes]:
    """The Dagster daemon: schedules, sensors, backfills and the run queue of DAGSTER_HOME."""
    return start([str(BIN / "dagster-daemon"), "run", "-m", MODULE, "-d", str(PROJECT_DIR)], output)


def url(port: int) -> str:
    return f"http://{HOST}:{port}"


WORKSPACE_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def wait_until_up(
    address: str, process: subprocess.Popen[bytes] | None = None, timeout: float = START_TIMEOUT
) -> float:
    """Wait until the webserver at `address` answers with its code location loaded; return the
    seconds waited. RuntimeError when the definitions do not load or `process` ends first,
    TimeoutError after `timeout` seconds."""
    started = time.monotonic()
    query = json.dumps({"query": WORKSPACE_QUERY}).encode()
    request = urllib.request.Request(f"{address}/graphql", data=query, headers={"Content-Type": "application/json"})
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, process.args))} ended with exit code {process.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                entries = json.load(answer)["data"]["workspaceOrError"].get("locationEntries", [])
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, KeyError):
            entries = []
        loaded = [entry for entry in entries if entry["loadStatus"] == "LOADED"]
        for entry in loaded:
            if (location := entry["locationOrLoadError"] or {}).get("__typename") == "PythonError":
                raise RuntimeError(f"{entry['name']} did not load: {location['message'].strip()}")
        if loaded:
            return time.monotonic() - started
        time.sleep(0.25)
    raise TimeoutError(f"{address} did not serve the code location within {timeout:.0f} s")


def wait_until_daemon_up(process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> float:
    """Wait until each daemon the instance requires (scheduler, sensors, backfills, run queue, ...) has
    written a heartbeat since now; return the seconds waited. RuntimeError when `process` (from
    `start_daemon`) ends first, TimeoutError after `timeout` seconds."""
    started, since = time.monotonic(), time.time()
    with get_instance() as instance:
        required = set(instance.get_required_daemon_types())
        while time.monotonic() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"dagster-daemon ended with exit code {process.returncode}")
            beating = {kind for kind, beat in instance.get_daemon_heartbeats().items() if beat.timestamp >= since}
            if required <= beating:
                return time.monotonic() - started
            time.sleep(0.5)
    raise TimeoutError(f"the daemons {sorted(required - beating)} sent no heartbeat within {timeout:.0f} s")


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def serve(port: int) -> int:
    """Start both, print the URL, wait for Ctrl-C/SIGTERM (or one of them ending), stop both."""
    if port_in_use(port):  # else the UI found there could pass for ours
        print(f"dagster: {HOST}:{port} is in use: choose another port (make dagster DAGSTER_PORT=...)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, raise_stopped)
    signal.signal(signal.SIGTERM, raise_stopped)
    processes: list[subprocess.Popen[bytes]] = []
    exit_code = 0
    try:
        started = time.monotonic()
        print(f"dagster: starting the UI and the daemon (DAGSTER_HOME={dagster_home()}) ...", flush=True)
        processes.append(start_webserver(port))
        processes.append(start_daemon())
        wait_until_up(url(port), processes[0])
        print(f"dagster: the UI is up on {url(port)} ({time.monotonic() - started:.1f} s); Ctrl-C stops it", flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        ended = next(process for process in processes if process.poll() is not None)
        print(f"dagster: {Path(str(ended.args[0])).name} ended with exit code {ended.returncode}", file=sys.stderr)
        exit_code = 1
    except Stopped as signal_name:
        print(f"dagster: {signal_name}: stopping the UI and the daemon", flush=True)
    except (RuntimeError, TimeoutError) as error:
        print(f"dagster: {error}", file=sys.stderr)
        exit_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(*processes)
    print("dagster: stopped", flush=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DAGSTER_PORT", "3000")))
    return serve(parser.parse_args(argv).port)


if __name__ == "__main__":
    sys.exit(main())
