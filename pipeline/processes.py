"""Child processes of the long-running commands (`make dagster`, `make realtime`): each started in a
session of its own, so a signal reaches it (and whatever it starts) only when we send one, and
stopped as a group: SIGTERM, then SIGKILL for whatever is still there after a timeout."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

Output = IO[bytes] | IO[str] | int | None


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


def raise_stopped(signum: int, _frame: object) -> None:
    """A signal handler: Ctrl-C or SIGTERM ends the serving loop through `Stopped`."""
    raise Stopped(signal.Signals(signum).name)


def start_child(
    command: list[str], directory: Path, environment: dict[str, str], output: Output = None
) -> subprocess.Popen[bytes]:
    """`command` in a new session (its own process group), output to `output` (default: ours)."""
    return subprocess.Popen(
        command,
        cwd=directory,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )


@dataclass(frozen=True)
class ProcessState:
    """A process as /proc/<pid>/stat shows it."""

    pid: int
    state: str  # R, S, D, ...; Z a zombie nobody reaped yet, X dead
    parent: int
    group: int

    @property
    def running(self) -> bool:
        return self.state not in ("Z", "X")


def process_state(pid: int) -> ProcessState | None:
    """What /proc says of `pid`; None when it is gone (or there is no /proc: macOS)."""
    try:
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return ProcessState(pid, fields[0], int(fields[1]), int(fields[2]))


def running_processes() -> list[ProcessState]:
    """Every process /proc lists that is not a zombie."""
    states = (process_state(int(entry.name)) for entry in Path("/proc").glob("[0-9]*"))
    return [state for state in states if state is not None and state.running]


def group_alive(group: int) -> bool:
    """Whether process group `group` still has a member that is not a zombie."""
    if not Path("/proc").is_dir():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    return any(process.group == group for process in running_processes())


def signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def stop_process(process: subprocess.Popen, signum: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Stop one child that is not a group leader: `signum`, then SIGKILL after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except BaseException:  # interrupted while waiting (a second Ctrl-C): it must not outlive us
        process.kill()
        process.wait()
        raise


def stop(*processes: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM to the process group of each of `processes` (started by `start_child`: each leads its
    own), wait until no member is left, SIGKILL the groups still there after `timeout` seconds."""
    for process in processes:
        signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    while any(group_alive(process.pid) for process in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    for process in processes:
        if group_alive(process.pid):
            signal_group(process.pid, signal.SIGKILL)
        process.wait()


def stopped_with_us(child: subprocess.Popen, timeout: float) -> subprocess.Popen[bytes]:
    """A watcher that stops `child` (SIGINT, SIGKILL after `timeout` s) if this process dies first
    without stopping it (SIGKILL, the OOM killer). Dagster does the same for its own helper processes
    (dagster/_core/execution/scripts/watch_orphans.py). Kill the watcher once `child` has ended."""
    command = [sys.executable, "-m", "pipeline.processes", str(os.getpid()), str(child.pid), str(timeout)]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def alive(pid: int) -> bool:
    """Whether `pid` (not our child) still runs: not gone and not a zombie nobody reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    if not Path("/proc").is_dir():  # macOS: kill(0) is all there is to ask
        return True
    state = process_state(pid)
    return state is not None and state.running


def watch(parent: int, child: int, timeout: float) -> None:
    """The watcher of `stopped_with_us`: once `parent` is gone (we are re-parented), stop `child`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the child itself
    while os.getppid() == parent:
        time.sleep(0.5)
    if not alive(child):
        return
    os.kill(child, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(child):
        os.kill(child, signal.SIGKILL)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_noted: list[int] = []
_wakeup: list[int] = []  # the read end of the pipe Python writes each signal's number to


@contextmanager
def signals_noted() -> Iterator[None]:
    """While inside, note each signal that arrives, whichever Python handler takes it: Python writes
    the signal's number to its wakeup fd before any handler runs (signal.set_wakeup_fd). Dagster maps
    SIGTERM onto its SIGINT handler and dlt takes both while it loads, so no handler can say which
    signal came, nor whether one came at all once dlt swallowed it. On the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    _noted.clear()
    _wakeup[:] = [read]
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        stop_signals()  # the last ones stay noted for the caller
        _wakeup.clear()
        os.close(read)
        os.close(write)


def stop_signals() -> list[signal.Signals]:
    """The SIGINT and SIGTERM noted (signals_noted) so far, in the order they came."""
    for read in _wakeup:
        try:
            _noted.extend(os.read(read, 512))
        except BlockingIOError:  # nothing new
            pass
    return [signal.Signals(number) for number in _noted if number in STOP_SIGNALS]


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
