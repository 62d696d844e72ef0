"""`pipeline`: extract the raw sources with dlt, then `dbt build`, then print a summary.

    pipeline run [--sources app,events,fx,chargebacks] [--target dev] [--skip-extract] [--skip-build]
"""

import argparse
import sys
import time

from extract.load import SOURCES, ExtractError, SourceLoad, load_source
from pipeline.dbt_runner import DbtSummary, run_dbt


def extract_stage(sources: list[str], destination: str) -> list[SourceLoad]:
    loads = []
    for name in sources:
        load = load_source(name, destination)
        print(f"[extract] {load.describe()}", flush=True)
        loads.append(load)
    return loads


def print_summary(loads: list[SourceLoad], build: DbtSummary | None, seconds: float) -> None:
    print("\n==== pipeline summary ====")
    for load in loads:
        rows = sum(load.rows.values())
        print(f"rows loaded   {load.source:<12} {rows:>12,}  into {load.dataset}")
    if build is not None:
        models = build.count("model", "success")
        print(f"models built  {models:>25,}")
        print(f"snapshots     {build.count('snapshot', 'success'):>25,}")
        print(f"seeds loaded  {build.count('seed', 'success'):>25,}")
        print(f"tests passed  {build.count('test', 'pass'):>25,}")
        print(f"tests warned  {build.count('test', 'warn'):>25,}")
        print(f"tests failed  {build.count('test', 'fail', 'error'):>25,}")
        print(f"dbt invocation {build.invocation_id}")
        for failure in build.failures:
            print(f"FAILED  {failure}")
    print(f"wall time     {seconds:>24.1f} s")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    sources = [name.strip() for name in args.sources.split(",") if name.strip()]
    loads: list[SourceLoad] = []
    if not args.skip_extract:
        destination = "bigquery" if args.target == "bigquery" else "duckdb"
        try:
            loads = extract_stage(sources, destination)
        except ExtractError as error:
            print(f"pipeline: extract failed: {error}", file=sys.stderr)
            return 1
    build = None
    if not args.skip_build:
        print("[build] dbt build", flush=True)
        build = run_dbt(["build"], target=args.target)
    print_summary(loads, build, time.perf_counter() - started)
    return 0 if build is None or build.success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline", description="extract -> dbt build -> summary")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="extract every source, then dbt build")
    run_parser.add_argument("--sources", default=",".join(SOURCES))
    run_parser.add_argument("--target", default=None, help="dbt target (default: profiles.yml's)")
    run_parser.add_argument("--skip-extract", action="store_true")
    run_parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
