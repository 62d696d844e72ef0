"""Readers of the gold while the pipeline writes: how often they fail, and what the published file costs.

    python -m bench.readers --scales 3000,100000          figures for docs/reliability.md
    python -m bench.readers poll <database> [--warehouse]  a reader polling every 0.1 s until SIGINT
    python -m bench.readers hold <database>                a reader holding one connection open until SIGINT

For each scale: generate the demo, run the pipeline once, then run it again (no train)
while one process polls the published file (data/published/gold.duckdb) and one polls `marts` in the
warehouse directly, each every 0.1 s, and a third holds a connection to the published file open.
Prints each reader's polls and failures, the longest stretch of failures, and the published file's
copy-and-swap time and size, as the pipeline reported them.

A reader (poll or hold) prints one JSON line when it stops: polls, failures (their first lines),
distinct versions seen, and whether every poll saw one whole version: the row counts and the
training_set hash that publication.version records equal what the tables hold.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from pipeline.training.export import content_hash

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-09-30"
INTERVAL = 0.1


class Stop:
    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self.request)
        signal.signal(signal.SIGTERM, self.request)

    def request(self, *_: object) -> None:
        self.requested = True


def whole_version(connection: duckdb.DuckDBPyConnection) -> str:
    """The version's invocation id, after checking its tables hold what publication.version says."""
    [(invocation_id, row_counts, digest)] = connection.sql(
        "select invocation_id, row_counts, training_set_hash from publication.version"
    ).fetchall()
    for name, rows in json.loads(row_counts).items():
        [(found,)] = connection.sql(f"select count(*) from marts.{name}").fetchall()
        if found != rows:
            raise AssertionError(f"version {invocation_id}: marts.{name} has {found} rows, not {rows}")
    if digest and content_hash(connection, "marts.training_set") != digest:
        raise AssertionError(f"version {invocation_id}: marts.training_set does not match its hash")
    return str(invocation_id)


def warehouse_read(connection: duckdb.DuckDBPyConnection) -> str:
    [(rows,)] = connection.sql("select count(*) from marts.training_set").fetchall()
    return str(rows)


def poll(path: str, warehouse: bool) -> dict[str, object]:
    """Open, read, close every INTERVAL seconds until stopped."""
    stop, failures, versions = Stop(), [], set()
    polls = absent = longest = 0
    started = None
    while not stop.requested:
        if not os.path.exists(path):
            absent += 1
        else:
            polls += 1
            try:
                with duckdb.connect(path, read_only=True) as connection:
                    versions.add(warehouse_read(connection) if warehouse else whole_version(connection))
                if started is not None:
                    longest, started = max(longest, time.perf_counter() - started), None
            except (duckdb.Error, AssertionError) as error:
                failures.append(str(error).splitlines()[0][:200])
                started = started if started is not None else time.perf_counter()
        time.sleep(INTERVAL)
    return {"polls": polls, "absent": absent, "failures": failures, "versions": len(versions), "longest_s": longest}


def hold(path: str) -> dict[str, object]:
    """Open once (when the file exists) and read through that one connection until stopped."""
    stop, failures = Stop(), []
    while not os.path.exists(path) and not stop.requested:
        time.sleep(INTERVAL)
    reads, held = 0, None
    if stop.requested:
        return {"reads": 0, "failures": [], "held_version": None, "latest_version": None}
    with duckdb.connect(path, read_only=True) as connection:
        while not stop.requested:
            try:
                version = whole_version(connection)
                if held not in (None, version):
                    failures.append(f"the held connection changed version: {held} -> {version}")
                held, reads = version, reads + 1
            except (duckdb.Error, AssertionError) as error:
                failures.append(str(error).splitlines()[0][:200])
            time.sleep(INTERVAL)
    with duckdb.connect(path, read_only=True) as connection:
        latest = whole_version(connection)
    return {"reads": reads, "failures": failures, "held_version": held, "latest_version": latest}


def environment(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ML_FEATURES_DATA_DIR": str(data_dir),
        "ML_FEATURES_DUCKDB_PATH": str(data_dir / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(data_dir / "target"),
    }


def reader(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.readers", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )


def stopped(process: subprocess.Popen) -> dict:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    return json.loads(output.strip().splitlines()[-1])


def run_pipeline(data_dir: Path, *extra: str) -> tuple[int, str, float]:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--date", RUN_DATE, "--skip-train", *extra],
        cwd=REPO_ROOT,
        env=environment(data_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr, time.perf_counter() - started


def measure(scale: int, root: Path) -> dict[str, object]:
    data_dir = root / f"scale_{scale}"
    shutil.rmtree(data_dir, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "demo.generate", "--out", str(data_dir / "demo"), "--scale", str(scale)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    code, output, first = run_pipeline(data_dir)
    assert code == 0, output
    published = str(data_dir / "published" / "gold.duckdb")
    readers = {
        "published_poll": reader("poll", published),
        "warehouse_poll": reader("poll", str(data_dir / "warehouse.duckdb"), "--warehouse"),
        "published_hold": reader("hold", published),
    }
    time.sleep(1.0)
    code, output, second = run_pipeline(data_dir)
    results = {name: stopped(process) for name, process in readers.items()}
    copy = re.search(r"published gold of invocation \S+ to \S+ \((.*); ([\d.]+) s\)", output)
    return {
        "scale": scale,
        "run_exit_code": code,
        "first_run_s": round(first, 1),
        "second_run_s": round(second, 1),
        "published_copy_s": float(copy[2]) if copy else None,
        "published_tables": copy[1] if copy else None,
        "published_file_mb": round(os.path.getsize(published) / 1e6, 1),
        "warehouse_file_mb": round(os.path.getsize(data_dir / "warehouse.duckdb") / 1e6, 1),
        **{name: summary(result) for name, result in results.items()},
    }


def summary(result: dict) -> dict[str, object]:
    failures = result.get("failures") or []
    return {
        **{key: value for key, value in result.items() if key != "failures"},
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("poll", "hold", "bench"), default="bench")
    parser.add_argument("database", nargs="?")
    parser.add_argument("--warehouse", action="store_true", help="poll marts in a warehouse (no version table)")
    parser.add_argument("--scales", default="3000", help="comma-separated transactions (bench)")
    parser.add_argument("--workdir", default=None, help="where the bench's data goes (default: a temporary folder)")
    args = parser.parse_args()
    if args.mode == "poll":
        print(json.dumps(poll(args.database, args.warehouse)), flush=True)
    elif args.mode == "hold":
        print(json.dumps(hold(args.database)), flush=True)
    else:
        root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_readers_"))
        for scale in (int(value) for value in args.scales.split(",")):
            print(json.dumps(measure(scale, root), indent=2), flush=True)


if __name__ == "__main__":
    main()
