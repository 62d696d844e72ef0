"""Extract throughput per source: `python bench/extract_throughput.py [--scale 1000000]`.

Generates the demo sources into a temporary folder (default 1M transactions, ~5M events), loads
each source with dlt into a fresh DuckDB warehouse there and prints rows/s per source, with the
time dlt spent in extract, normalize and load.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from demo.generate import generate  # noqa: E402
from extract.load import SOURCES, SourceLoad, load_source  # noqa: E402


def run(scale: int, seed: int, sources: list[str], workdir: Path) -> list[SourceLoad]:
    """Generate the demo at `scale` under `workdir` and load `sources` one by one, timed."""
    os.environ["ML_FEATURES_DATA_DIR"] = str(workdir)
    os.environ["ML_FEATURES_DUCKDB_PATH"] = str(workdir / "warehouse.duckdb")
    started = time.perf_counter()
    counts = generate(workdir / "demo", seed=seed, scale=scale)
    print(f"generated {counts} in {time.perf_counter() - started:.1f} s", flush=True)
    loads = []
    for name in sources:
        load = load_source(name)
        print(describe(load), flush=True)
        loads.append(load)
    return loads


def describe(load: SourceLoad) -> str:
    """One line: rows, seconds, rows/s and dlt's step times."""
    rows = sum(load.rows.values())
    rate = rows / load.seconds if load.seconds else 0.0
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in load.steps.items())
    return f"{load.source:<12} {rows:>10,} rows in {load.seconds:6.1f} s = {rate:>10,.0f} rows/s  ({steps})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1_000_000, help="transactions (events are ~5x)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, default: all")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temp dir)")
    args = parser.parse_args(argv)
    sources = [name.strip() for name in args.sources.split(",")]
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        loads = run(args.scale, args.seed, sources, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="extract-bench-") as workdir:
            loads = run(args.scale, args.seed, sources, Path(workdir))
    rows = sum(sum(load.rows.values()) for load in loads)
    seconds = sum(load.seconds for load in loads)
    print(f"{'total':<12} {rows:>10,} rows in {seconds:6.1f} s = {rows / seconds:>10,.0f} rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
