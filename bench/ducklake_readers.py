"""DuckLake as the way readers and the writer share the gold: do readers fail while it is written?

    pip install --target /tmp/ducklake-wheels --no-deps duckdb-extension-ducklake==1.4.4 \
        duckdb-extension-sqlite-scanner==1.4.4        # wheels matching duckdb 1.4.4 (not project deps)
    python -m bench.ducklake_readers /tmp/ducklake-wheels --seconds 20 --rows 1000000

One process rewrites a DuckLake table (catalog: a SQLite file or a DuckDB file; data: Parquet) over
and over, `--rows` rows each time, in one transaction; another opens the lake read-only every 0.1 s
and checks it sees one whole version (the row count). Prints polls, failures and the first failure,
for each catalog kind. Figures for docs/reliability.md.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def lake(wheels: Path, catalog: str, data: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    for name in ("ducklake", "sqlite_scanner"):
        found = next((wheels / f"duckdb_extension_{name}").rglob(f"{name}.duckdb_extension"))
        connection.execute(f"load '{found}'")
    options = f"data_path '{data}'" + (", read_only" if read_only else "")
    connection.execute(f"attach 'ducklake:{catalog}' as lake ({options})")
    return connection


def write(wheels: Path, catalog: str, data: Path, seconds: float, rows: int) -> dict[str, object]:
    connection = lake(wheels, catalog, data, read_only=False)
    versions, started, durations = 0, time.perf_counter(), []
    while time.perf_counter() - started < seconds:
        began = time.perf_counter()
        connection.execute(f"create or replace table lake.gold as select range as id, random() as v from range({rows})")
        durations.append(time.perf_counter() - began)
        versions += 1
    return {"versions": versions, "write_s": round(sum(durations) / len(durations), 3)}


def poll(wheels: Path, catalog: str, data: Path, seconds: float, rows: int) -> dict[str, object]:
    polls, failures, started = 0, [], time.perf_counter()
    while time.perf_counter() - started < seconds:
        polls += 1
        try:
            connection = lake(wheels, catalog, data, read_only=True)
            [(count,)] = connection.sql("select count(*) from lake.gold").fetchall()
            connection.close()
            if count != rows:
                failures.append(f"saw {count} rows, not {rows}")
        except duckdb.Error as error:
            failures.append(str(error).splitlines()[0][:160])
        time.sleep(0.1)
    return {"polls": polls, "failures": len(failures), "first_failure": failures[0] if failures else None}


def measure(wheels: Path, kind: str, seconds: float, rows: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix=f"ducklake_{kind}_"))
    catalog = f"sqlite:{root / 'catalog.sqlite'}" if kind == "sqlite" else str(root / "catalog.ducklake")
    setup = lake(wheels, catalog, root / "data", read_only=False)
    setup.execute(f"create table lake.gold as select range as id, random() as v from range({rows})")
    setup.close()
    common = [str(wheels), "--catalog", catalog, "--data", str(root / "data"), "--rows", str(rows)]
    common += ["--seconds", str(seconds)]
    module = [sys.executable, "-m", "bench.ducklake_readers"]
    writer = subprocess.Popen([*module, *common, "--role", "write"], stdout=subprocess.PIPE, text=True)
    reader = subprocess.Popen([*module, *common, "--role", "poll"], stdout=subprocess.PIPE, text=True)
    written, read = (json.loads(process.communicate()[0].strip().splitlines()[-1]) for process in (writer, reader))
    return {"catalog": kind, "rows": rows, **{f"writer_{k}": v for k, v in written.items()}, **read}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="folder the two extension wheels were installed into")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--role", choices=("write", "poll"), default=None)
    parser.add_argument("--catalog")
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.role == "write":
        print(json.dumps(write(args.wheels, args.catalog, args.data, args.seconds, args.rows)))
    elif args.role == "poll":
        print(json.dumps(poll(args.wheels, args.catalog, args.data, args.seconds, args.rows)))
    else:
        for kind in ("sqlite", "duckdb"):
            print(json.dumps(measure(args.wheels, kind, args.seconds, args.rows)), flush=True)


if __name__ == "__main__":
    main()
