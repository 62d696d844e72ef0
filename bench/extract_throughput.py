"""Extract throughput per source: `python bench/extract_throughput.py [--scale 1000000]`.

Generates the demo sources into a temporary folder (default 1M transactions, ~5M events), loads
each source with dlt into a fresh DuckDB warehouse there and prints rows/s per source (rows
loaded over wall-clock seconds, from source to warehouse), with the seconds dlt spent in each of
its steps (extract, normalize, load) and the CPU seconds the process used (all its threads).
The machine's load average is printed too: on a shared machine, wall-clock rates drop with it.
"""

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from demo.generate import generate  # noqa: E402
from extract.load import SOURCES, SourceLoad, load_source  # noqa: E402


@dataclass
class Measured:
    """One source's load and the CPU seconds it took."""

    load: SourceLoad
    cpu_seconds: float

    @property
    def rows(self) -> int:
        return sum(self.load.rows.values())

    def describe(self) -> str:
        """One line: rows, seconds, rows/s, dlt's step times and CPU seconds."""
        rate = self.rows / self.load.seconds if self.load.seconds else 0.0
        steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self.load.steps.items())
        return (
            f"{self.load.source:<12} {self.rows:>10,} rows in {self.load.seconds:6.1f} s = {rate:>10,.0f} rows/s"
            f"  ({steps}; cpu {self.cpu_seconds:.1f} s)"
        )


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def run(scale: int, seed: int, sources: list[str], workdir: Path) -> list[Measured]:
    """Generate the demo at `scale` under `workdir` and load `sources` one by one, timed."""
    os.environ["ML_FEATURES_DATA_DIR"] = str(workdir)
    os.environ["ML_FEATURES_DUCKDB_PATH"] = str(workdir / "warehouse.duckdb")
    started = time.perf_counter()
    counts = generate(workdir / "demo", seed=seed, scale=scale)
    print(f"generated {counts} in {time.perf_counter() - started:.1f} s", flush=True)
    print(f"{os.cpu_count()} CPUs, load average {load_average()}", flush=True)
    measured = []
    for name in sources:
        cpu = time.process_time()
        load = load_source(name)
        measured.append(Measured(load, time.process_time() - cpu))
        print(measured[-1].describe(), flush=True)
    print(f"load average {load_average()}", flush=True)
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1_000_000, help="transactions (events are ~5x)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, default: all")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temp dir)")
    args = parser.parse_args(argv)
    os.chdir(REPO_ROOT)  # dlt reads the project's .dlt/config.toml from the working directory
    sources = [name.strip() for name in args.sources.split(",")]
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        measured = run(args.scale, args.seed, sources, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="extract-bench-") as workdir:
            measured = run(args.scale, args.seed, sources, Path(workdir))
    rows = sum(item.rows for item in measured)
    seconds = sum(item.load.seconds for item in measured)
    print(f"{'total':<12} {rows:>10,} rows in {seconds:6.1f} s = {rows / seconds:>10,.0f} rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
