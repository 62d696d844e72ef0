"""Start the BigQuery emulator on 127.0.0.1: `PYTHONPATH=.ci python -m bigquery_emulator.server [--port 9050]`.

`running_emulator(folder)` (for tests) builds the emulator's venv if needed (install.py), starts
`bqemulator start` on free ports, in memory, with the HOME that holds the spatial extension and
without the Avro extension (it would be downloaded), waits for `/healthz` and stops the server
afterwards. Point clients at `Emulator.url`: dbt's `bigquery_emulator` target and the
google-cloud-bigquery client under dlt read it from `BIGQUERY_EMULATOR_HOST` (`environment()`).
"""

import argparse
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bigquery_emulator.install import emulator_home, install
from pipeline.processes import stop_process

HOST = "127.0.0.1"
PROJECT = "ml-features-emulator"
STARTUP_SECONDS = 60.0


class EmulatorError(RuntimeError):
    """The emulator did not start."""


@dataclass
class Emulator:
    url: str
    project: str
    process: subprocess.Popen[bytes]
    log: Path

    def environment(self) -> dict[str, str]:
        """What dbt's `bigquery_emulator` target and dlt's bigquery destination read to reach it."""
        return {
            "BIGQUERY_EMULATOR_HOST": self.url,
            "BIGQUERY_PROJECT": self.project,
            "DBT_TARGET": "bigquery_emulator",
            # the emulator cannot read gzip-compressed load files
            "DATA_WRITER__DISABLE_COMPRESSION": "true",
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def log_tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def start(folder: Path, port: int | None = None, project: str = PROJECT) -> Emulator:
    """The emulator, started and answering; its log is `<folder>/bqemulator.log`."""
    venv = install()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = folder / "bqemulator.log"
    command = [
        str(venv / "bin" / "bqemulator"), "start", "--ephemeral", "--project", project,
        "--rest-host", HOST, "--rest-port", str(port), "--grpc-host", HOST, "--grpc-port", str(free_port()),
        "--log-level", "warning", "--log-format", "console",
    ]  # fmt: skip
    environment = {
        **os.environ,
        "HOME": str(emulator_home(venv)),
        # DuckDB's avro extension is downloaded at start: nothing here loads Avro
        "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
        # no query cache: a test reruns the same SQL after the data changed
        "BQEMU_QUERY_CACHE_TTL_SECONDS": "0",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment, cwd=folder)
    emulator = Emulator(f"http://{HOST}:{port}", project, process, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not healthy(emulator.url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(emulator)
            raise EmulatorError(
                f"bqemulator did not answer on {emulator.url} within {STARTUP_SECONDS:.0f} s"
                f" (exit {process.returncode}); last lines of {log}:\n{log_tail(log)}"
            )
        time.sleep(0.2)
    return emulator


def stop(emulator: Emulator) -> None:
    stop_process(emulator.process, timeout=10)


@contextmanager
def running_emulator(folder: Path, port: int | None = None) -> Iterator[Emulator]:
    emulator = start(folder, port)
    try:
        yield emulator
    finally:
        stop(emulator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9050)
    parser.add_argument("--folder", type=Path, default=Path("data") / "bqemulator", help="where its log goes")
    arguments = parser.parse_args()
    with running_emulator(arguments.folder, arguments.port) as emulator:
        exports = " ".join(f"{key}={value}" for key, value in emulator.environment().items())
        print(f"bigquery emulator on {emulator.url} (log: {emulator.log}); Ctrl-C stops it. Use it with:")
        print(f"export {exports}")
        try:
            emulator.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
