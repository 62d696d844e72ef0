"""`make bench`: the whole pipeline at several scales, against pandas and against plain DuckDB.

For each scale (transactions over a year; events are about five times as many) it:
  1. generates the demo sources as of the day before the last (a year of history);
  2. runs the pipeline's stages one process each, `pipeline run --skip-...` (extract, a full
     `dbt build`, export, train), timing each and reading its peak RSS (the process and every
     child it waited for, such as dbt);
  3. replays the same `dbt build` as plain SQL on a copy of the raw warehouse (bench/direct_sql.py):
     dbt's overhead;
  4. computes the same cleaning and point-in-time features in pandas from the same raw tables
     (bench/pandas_features.py), checks the two outputs agree, and times both;
  5. generates the last day, runs extract + an incremental build of that one day on top of the
     year, then a full refresh of the same year and day right after it: the day's share of a full
     refresh is timed back to back (this host's speed drifts by a fifth over minutes), and the gold
     tables of the two builds must be equal.
The two sides of every ratio run one right after the other: the full build, its plain-SQL replay
and pandas; the new day and its full refresh.
Every DuckDB connection runs under `--memory-limit` (default 2GB). Figures are printed per scale
and written to `<workdir>/results.json`, then the targets are checked as ratios.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
from dagster import DagsterEventType, DagsterInstance

from pipeline.export import content_hash

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
END = dt.date(2026, 8, 31)  # the new day of the incremental step
START = END - dt.timedelta(days=365)  # a year of history before it
HISTORY_AS_OF = END - dt.timedelta(days=1)
SEED = 42

# the targets, as ratios measured in one run
PANDAS_SPEEDUP_MIN = 10.0
DBT_OVERHEAD_MAX = 1.3
INCREMENTAL_SHARE_MAX = 0.05
EXTRACT_ROWS_PER_SECOND_MIN = 300_000
END_TO_END_SECONDS_MAX = 600.0
PEAK_RSS_MB_MAX = 4096.0

# compared after the new day's incremental build and its full refresh
GOLD_TABLES = ("marts.fct_transaction_features", "marts.training_set", "marts.user_daily_features")


@dataclass
class Step:
    """One measured process: wall seconds, rows it handled and its peak resident memory."""

    name: str
    seconds: float
    peak_rss_mb: float
    rows: int = 0
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        rate = f"{self.rows_per_second:>12,.0f} rows/s" if self.rows else " " * 19
        rows = f"{self.rows:>12,} rows {rate}"
        overhead = self.detail.get("orchestration_overhead_seconds")
        dagster = f"  (Dagster overhead {overhead:.1f} s)" if overhead is not None else ""
        return f"  {self.name:<28} {self.seconds:>8.1f} s {rows}  peak RSS {self.peak_rss_mb:>7,.0f} MB{dagster}"


class BenchFailed(RuntimeError):
    """A measured step failed: the benchmark's figures would mean nothing."""


def measure(name: str, command: list[str], environment: dict[str, str], log: Path) -> tuple[Step, str]:
    """Run `command` to completion; its wall time, its peak RSS (with its waited-for children) and output."""
    started = time.perf_counter()
    with log.open("a") as output:
        output.write(f"\n$ {' '.join(command)}\n")
        output.flush()
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            output.write(line)
            lines.append(line)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    text = "".join(lines)
    if process.returncode != 0:
        raise BenchFailed(f"{name} failed (exit {process.returncode}); its output is in {log}:\n{text[-2000:]}")
    return Step(name, seconds, usage.ru_maxrss / 1024), text


def last_run_rows(data_dir: Path, stage: str) -> int:
    """Rows the stage of the last `pipeline run` handled, from what Dagster recorded: rows loaded
    (extract), rows of the published features (build), rows exported (export), rows trained and
    validated on (train)."""
    instance = DagsterInstance.from_config(str((data_dir / "dagster").resolve()))
    [run] = instance.get_runs(limit=1)
    metadata = [
        (event.step_key, event.materialization.metadata)
        for event in (entry.dagster_event for entry in instance.all_logs(run.run_id))
        if event is not None and event.event_type == DagsterEventType.ASSET_MATERIALIZATION
    ]
    values = {
        "extract": [entry["rows_loaded"].value for step, entry in metadata if step.startswith("extract_")],
        "export": [entry["dagster/row_count"].value for step, entry in metadata if step == "training_set_export"],
        "train": [
            entry["train_rows"].value + entry["validation_rows"].value
            for step, entry in metadata
            if step == "fraud_model"
        ],
    }
    if stage == "build":
        with duckdb.connect(str(data_dir / "published" / "gold.duckdb"), read_only=True) as connection:
            return connection.sql("select count(*) from marts.fct_transaction_features").fetchone()[0]
    return int(sum(values[stage]))


def last_dbt_target(target: Path) -> Path:
    """The artifacts folder of the last dbt build (dagster-dbt gives each invocation its own:
    target/dbt_models-<run id>-<n>, with its manifest, run_results and compiled SQL)."""
    return max(target.glob("dbt_models-*/run_results.json"), key=lambda path: path.stat().st_mtime).parent


def pipeline_stage(
    stage: str, day: dt.date, environment: dict[str, str], log: Path, *extra: str, label: str = ""
) -> Step:
    """`pipeline run` doing only `stage` for `day`; rows are the stage's own count (rows out, or in for train)."""
    skips = [f"--skip-{other}" for other in ("extract", "build", "export", "train") if other != stage]
    command = [str(BIN / "pipeline"), "run", "--date", day.isoformat(), *skips, *extra]
    step, _ = measure(label or stage, command, environment, log)
    step.rows = last_run_rows(Path(environment["ML_FEATURES_DATA_DIR"]), stage)
    step.detail["orchestration_overhead_seconds"] = round(step.seconds - steps_seconds(environment), 2)
    return step


def steps_seconds(environment: dict[str, str]) -> float:
    """Seconds the last run's steps took (Dagster's step stats): the rest of the process's time is
    the orchestration's overhead (importing the definitions, the run's bookkeeping, the summary)."""
    instance = DagsterInstance.from_config(str((Path(environment["ML_FEATURES_DATA_DIR"]) / "dagster").resolve()))
    [run] = instance.get_runs(limit=1)
    return sum((stats.end_time or 0) - (stats.start_time or 0) for stats in instance.get_run_step_stats(run.run_id))


def generate(workdir: Path, scale: int, as_of: dt.date, environment: dict[str, str], log: Path) -> Step:
    command = [str(BIN / "python"), "-m", "demo.generate", "--out", str(workdir / "demo"), "--seed", str(SEED)]
    command += [
        "--scale",
        str(scale),
        "--start",
        START.isoformat(),
        "--end",
        END.isoformat(),
        "--as-of",
        as_of.isoformat(),
    ]
    step, _ = measure(f"generate (as of {as_of})", command, environment, log)
    return step


def raw_rows(warehouse: Path) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return sum(
            connection.execute(f"select count(*) from {table}").fetchone()[0]
            for table in (
                "raw_app.transactions",
                "raw_app.users",
                "raw_events.events",
                "raw_fx.rates",
                "raw_chargebacks.chargebacks",
            )
        )


def run_scale(scale: int, root: Path, memory_limit: str, extract_memory_limit: str) -> dict[str, object]:
    """Every measurement at one scale; returns them as a JSON-able dict and prints them."""
    workdir = root / str(scale)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    warehouse = workdir / "warehouse.duckdb"
    log = workdir / "bench.log"
    environment = {
        **os.environ,
        "ML_FEATURES_DATA_DIR": str(workdir),
        "ML_FEATURES_DUCKDB_PATH": str(warehouse),
        "DBT_TARGET_PATH": str(workdir / "target"),
        "ML_FEATURES_DUCKDB_MEMORY_LIMIT": memory_limit,
    }
    print(
        f"\nscale {scale:,} transactions ({START} .. {END}), DuckDB memory_limit {memory_limit} "
        f"(extract {extract_memory_limit}); log: {log}",
        flush=True,
    )
    steps: dict[str, Step] = {}

    def record(key: str, step: Step) -> Step:
        steps[key] = step
        print(step.line(), flush=True)
        return step

    record("generate", generate(workdir, scale, HISTORY_AS_OF, environment, log))
    # dlt's delete-insert merge of the first 10M app transactions needs more than 2 GB of DuckDB memory
    extracting = environment | {"ML_FEATURES_DUCKDB_MEMORY_LIMIT": extract_memory_limit}
    record("extract", pipeline_stage("extract", HISTORY_AS_OF, extracting, log))
    raw_copy = workdir / "direct" / "warehouse.duckdb"  # same file name: the compiled SQL names the catalog
    raw_copy.parent.mkdir()
    shutil.copy(warehouse, raw_copy)
    record(
        "build",
        pipeline_stage("build", HISTORY_AS_OF, environment, log, "--full-refresh", label="build (full refresh)"),
    )
    build_target = last_dbt_target(workdir / "target")
    run_results = json.loads((build_target / "run_results.json").read_text())

    # dbt's overhead: the same SQL, run directly
    command = [
        str(BIN / "python"),
        "-m",
        "bench.direct_sql",
        "--warehouse",
        str(raw_copy),
        "--target-path",
        str(build_target),
    ]
    direct, output = measure("direct SQL (same build)", command, environment, log)
    replayed = json.loads(output.strip().splitlines()[-1])
    direct.detail = {"sql_seconds": replayed["seconds"]}
    record("direct_sql", direct)

    # pandas: same cleaning and features from the same raw tables; checked against the warehouse
    command = [str(BIN / "python"), "-m", "bench.pandas_features", "--warehouse", str(raw_copy)]
    command += ["--run-date", HISTORY_AS_OF.isoformat(), "--compare-with", str(warehouse)]
    pandas_step, output = measure("pandas features", command, environment, log)
    pandas_step.detail = json.loads(output.strip().splitlines()[-1])
    pandas_step.rows = int(pandas_step.detail["rows"])
    record("pandas", pandas_step)
    feature_models = feature_ancestors(
        workdir / "target" / "manifest.json", "model.ml_features.fct_transaction_features"
    )
    sql_feature_seconds = sum(seconds for node, seconds in replayed["nodes"].items() if node in feature_models)
    shutil.rmtree(raw_copy.parent)
    record("export", pipeline_stage("export", HISTORY_AS_OF, environment, log))
    record("train", pipeline_stage("train", HISTORY_AS_OF, environment, log))

    # one new day on top of the year, against a full refresh of the same data right after it
    record("generate_day", generate(workdir, scale, END, environment, log))
    record("extract_day", pipeline_stage("extract", END, extracting, log, label="extract (new day)"))
    record("build_day", pipeline_stage("build", END, environment, log, label="build (new day)"))
    incremental_gold = gold_hashes(warehouse)
    refresh = pipeline_stage("build", END, environment, log, "--full-refresh", label="build (full refresh, +day)")
    record("build_day_full_refresh", refresh)
    refreshed_gold = gold_hashes(warehouse)
    differing = sorted(relation for relation in GOLD_TABLES if incremental_gold[relation] != refreshed_gold[relation])
    print(f"  gold tables of the new day equal its full refresh: {not differing} {' '.join(differing)}", flush=True)

    end_to_end = ["extract", "build", "export", "train"]
    figures = {
        "scale": scale,
        "raw_rows": raw_rows(warehouse),
        "steps": {key: asdict(step) | {"rows_per_second": step.rows_per_second} for key, step in steps.items()},
        "end_to_end_seconds": sum(steps[key].seconds for key in end_to_end),
        "end_to_end_peak_rss_mb": max(steps[key].peak_rss_mb for key in end_to_end),
        "extract_rows_per_second": steps["extract"].rows_per_second,
        "dbt_build_seconds": steps["build"].seconds,
        "dbt_elapsed_seconds": run_results["elapsed_time"],
        "direct_sql_seconds": replayed["seconds"],
        "dbt_overhead_ratio": steps["build"].seconds / replayed["seconds"],
        "pandas_seconds": pandas_step.detail["read_seconds"] + pandas_step.detail["feature_seconds"],
        "sql_feature_seconds": sql_feature_seconds,
        "pandas_speed_ratio": (pandas_step.detail["read_seconds"] + pandas_step.detail["feature_seconds"])
        / sql_feature_seconds,
        "pandas_agrees": not pandas_step.detail["problems"],
        "incremental_day_share": steps["build_day"].seconds / steps["build_day_full_refresh"].seconds,
        "incremental_equals_full_refresh": not differing,
        "incremental_differs_in": differing,
    }
    print(summary(figures), flush=True)
    return figures


def gold_hashes(warehouse: Path) -> dict[str, str]:
    """The content hash of each gold table, without its rows' dlt load ids (an incremental run keeps the
    load a row's features were computed from when a later load changed only its status)."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        hashes = {}
        for relation in GOLD_TABLES:
            schema, table = relation.split(".")
            columns = connection.execute(
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ? and column_name <> 'source_load_id' "
                "order by ordinal_position",
                [schema, table],
            ).fetchall()
            selected = ", ".join(f'"{column}"' for (column,) in columns)
            hashes[relation] = content_hash(connection, f"(select {selected} from {relation})")
    return hashes


def feature_ancestors(manifest_path: Path, unique_id: str) -> set[str]:
    """The models and seeds `unique_id` is built from (itself included): the SQL side of the pandas race."""
    parents = json.loads(manifest_path.read_text())["parent_map"]
    seen, todo = set(), [unique_id]
    while todo:
        node = todo.pop()
        if node not in seen and node.startswith(("model.", "seed.", "snapshot.")):
            seen.add(node)
            todo += parents.get(node, [])
    return seen


def summary(figures: dict[str, object]) -> str:
    return "\n".join(
        [
            f"  end to end (extract + build + export + train): {figures['end_to_end_seconds']:.1f} s, "
            f"peak RSS {figures['end_to_end_peak_rss_mb']:,.0f} MB",
            f"  extract: {figures['extract_rows_per_second']:,.0f} rows/s",
            f"  dbt build {figures['dbt_build_seconds']:.1f} s "
            f"(dbt's own elapsed {figures['dbt_elapsed_seconds']:.1f} s) "
            f"vs the same SQL run directly {figures['direct_sql_seconds']:.1f} s: {figures['dbt_overhead_ratio']:.2f}x",
            f"  pandas {figures['pandas_seconds']:.1f} s vs SQL {figures['sql_feature_seconds']:.1f} s "
            "for the same features: "
            f"pandas takes {figures['pandas_speed_ratio']:.2f}x the SQL's time; "
            f"outputs agree: {figures['pandas_agrees']}",
            f"  one new day {figures['steps']['build_day']['seconds']:.1f} s = "
            f"{figures['incremental_day_share']:.1%} of a full refresh of the same data "
            f"({figures['steps']['build_day_full_refresh']['seconds']:.1f} s); "
            f"equal gold tables: {figures['incremental_equals_full_refresh']}",
        ]
    )


def targets(results: list[dict[str, object]]) -> list[str]:
    """One line per target, for the largest scale measured (the targets are set for 10M)."""
    top = max(results, key=lambda figures: figures["scale"])
    checks = [
        (
            "pandas at least 10x slower",
            top["pandas_speed_ratio"] >= PANDAS_SPEEDUP_MIN,
            f"{top['pandas_speed_ratio']:.1f}x",
        ),
        ("pandas output agrees", top["pandas_agrees"], str(top["pandas_agrees"])),
        (
            "new day's gold tables equal a full refresh",
            top["incremental_equals_full_refresh"],
            str(top["incremental_equals_full_refresh"]),
        ),
        (
            "dbt build at most 1.3x direct SQL",
            top["dbt_overhead_ratio"] <= DBT_OVERHEAD_MAX,
            f"{top['dbt_overhead_ratio']:.2f}x",
        ),
        (
            "one new day at most 5% of a full refresh",
            top["incremental_day_share"] <= INCREMENTAL_SHARE_MAX,
            f"{top['incremental_day_share']:.1%}",
        ),
        (
            "extract at least 300k rows/s",
            top["extract_rows_per_second"] >= EXTRACT_ROWS_PER_SECOND_MIN,
            f"{top['extract_rows_per_second']:,.0f} rows/s",
        ),
        (
            "end to end under 10 minutes",
            top["end_to_end_seconds"] < END_TO_END_SECONDS_MAX,
            f"{top['end_to_end_seconds']:.0f} s",
        ),
        (
            "peak RSS under 4 GB",
            top["end_to_end_peak_rss_mb"] < PEAK_RSS_MB_MAX,
            f"{top['end_to_end_peak_rss_mb']:,.0f} MB",
        ),
    ]
    return [f"  {'met   ' if met else 'MISSED'} {name}: {value}" for name, met, value in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="100000,1000000,10000000", help="comma-separated transaction counts")
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit of dbt, export, train, SQL replay")
    parser.add_argument("--extract-memory-limit", default="3GB", help="DuckDB memory_limit of dlt's loads")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "data" / "bench")
    args = parser.parse_args(argv)
    scales = [int(value.replace("_", "")) for value in args.scales.split(",") if value.strip()]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    results = []
    for scale in scales:
        try:
            results.append(run_scale(scale, args.workdir, args.memory_limit, args.extract_memory_limit))
        except BenchFailed as error:
            print(f"bench failed at scale {scale:,}: {error}", file=sys.stderr)
            return 1
        document = {
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "results": results,
        }
        (args.workdir / "results.json").write_text(json.dumps(document, indent=2))
    print(f"\ntargets (at {max(scales):,} transactions):")
    print("\n".join(targets(results)))
    print(f"figures: {args.workdir / 'results.json'}")
    agree = all(figures["pandas_agrees"] and figures["incremental_equals_full_refresh"] for figures in results)
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
