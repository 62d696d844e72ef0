"""`pipeline`: extract -> dbt build -> export -> train, with a run log and a summary.

    pipeline run [--date YYYY-MM-DD] [--target dev|ci|bigquery] [--sources app,events,...]
                 [--skip-extract] [--skip-build] [--skip-export] [--skip-train] [--force]
    pipeline export      export the current training set (versioned Parquet + manifest)
    pipeline train       train on the latest export and print validation metrics

dbt stays usable on its own: this command only runs dlt, then `dbt build`, then Python steps.
"""

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from contextlib import closing

import duckdb

from extract.load import SOURCES, ExtractError, SourceLoad, duckdb_path, load_source
from pipeline.dbt_runner import DbtSummary, run_dbt
from pipeline.export import Manifest, export_training_set
from pipeline.run_log import RunRecord, StageRecord, utc_now, write_run
from pipeline.train import TrainingError, TrainingResult, train


class StageFailed(RuntimeError):
    """A stage failed for a reason the message gives; the run stops there."""


def log(message: str) -> None:
    print(message, flush=True)


def run_stage(run: RunRecord, name: str, action: Callable[[StageRecord], None]) -> None:
    """Run one stage, time it, record it, and print its progress line."""
    stage = StageRecord(stage=name, started_at=utc_now(), ended_at=utc_now(), status="running")
    run.stages.append(stage)
    log(f"[{name}] started")
    try:
        action(stage)
        stage.status = "success" if stage.status == "running" else stage.status
    except Exception:
        stage.status = "failed"
        raise
    finally:
        stage.ended_at = utc_now()
        log(f"[{name}] {stage.status} in {stage.seconds:.1f} s (rows in {stage.rows_in:,}, out {stage.rows_out:,})")


def extract_stage(run: RunRecord, sources: list[str], destination: str) -> Callable[[StageRecord], None]:
    def action(stage: StageRecord) -> None:
        loads: list[SourceLoad] = []
        for name in sources:
            try:
                load = load_source(name, destination)
            except ExtractError as error:
                raise StageFailed(f"extract failed: {error}") from error
            log(f"[extract] {load.describe()}")
            loads.append(load)
            run.loads += [(load.source, load.dataset, load_id) for load_id in load.load_ids]
        stage.rows_out = sum(sum(load.rows.values()) for load in loads)
        stage.detail = {load.source: load.rows for load in loads}

    return action


def quarantine_counts(path: str) -> list[tuple[str, str, int]]:
    """Rejected rows by table and rule, for the message of a failed validation."""
    try:
        with closing(duckdb.connect(path, read_only=True)) as connection:
            return connection.sql(
                "select source_table, rejection_rule, count(*) from intermediate.int_quarantined_rows "
                "group by all order by all"
            ).fetchall()
    except duckdb.Error:
        return []


def build_stage(run: RunRecord, target: str | None, dbt_vars: dict[str, object], full_refresh: bool):
    def action(stage: StageRecord) -> None:
        args = ["build", "--full-refresh"] if full_refresh else ["build"]
        summary: DbtSummary = run_dbt(args, target=target, dbt_vars=dbt_vars)
        run.node_results = summary.node_results
        stage.rows_out = summary.count("model", "success")
        stage.detail = {
            "dbt_invocation_id": summary.invocation_id,
            "models": summary.count("model", "success"),
            "tests_passed": summary.count("test", "pass"),
            "tests_warned": summary.count("test", "warn"),
            "tests_failed": summary.count("test", "fail", "error"),
        }
        if not summary.success:
            lines = ["dbt build failed; nothing downstream was run:", *(f"  {f}" for f in summary.failures)]
            quarantined = quarantine_counts(duckdb_path()) if target in (None, "dev", "ci") else []
            if quarantined:
                lines.append("quarantined rows (intermediate.int_quarantined_rows):")
                lines += [f"  {table:<26} {rule:<24} {count:>8,}" for table, rule, count in quarantined]
            raise StageFailed("\n".join(lines))

    return action


def export_stage(run: RunRecord, result: dict[str, object]) -> Callable[[StageRecord], None]:
    def action(stage: StageRecord) -> None:
        manifest: Manifest = export_training_set(duckdb_path())
        stage.rows_in = stage.rows_out = manifest.row_count
        stage.detail = {"version": manifest.version, "content_hash": manifest.content_hash, "reused": manifest.reused}
        result["manifest"] = manifest
        log(f"[export] training_set version {manifest.version}: {manifest.row_count:,} rows, "
            f"{manifest.partitions} date partitions{' (unchanged, reused)' if manifest.reused else ''}")

    return action


def train_stage(result: dict[str, object]) -> Callable[[StageRecord], None]:
    def action(stage: StageRecord) -> None:
        try:
            training: TrainingResult = train()
        except TrainingError as error:
            raise StageFailed(f"train failed: {error}") from error
        stage.rows_in = training.train_rows + training.validation_rows
        stage.detail = {"roc_auc": training.roc_auc, "pr_auc": training.pr_auc, "model": training.model_path}
        result["training"] = training
        print_training(training)

    return action


def print_training(training: TrainingResult) -> None:
    log(f"[train] validation ROC AUC {training.roc_auc:.3f} (constant baseline {training.baseline_roc_auc:.3f}), "
        f"PR AUC {training.pr_auc:.3f} (baseline {training.baseline_pr_auc:.3f}) "
        f"on {training.validation_rows:,} rows; model {training.model_path}")


def print_summary(run: RunRecord) -> None:
    log("\n==== pipeline summary ====")
    log(f"run {run.run_id}  {run.command}  target {run.target}  run_date {run.run_date}  status {run.status}")
    for stage in run.stages:
        log(f"  {stage.stage:<8} {stage.status:<8} {stage.seconds:>7.1f} s  rows in {stage.rows_in:>11,}  "
            f"out {stage.rows_out:>11,}")
    for stage in run.stages:
        if stage.stage == "extract":
            for source, rows in stage.detail.items():
                log(f"  rows loaded  {source:<12} {sum(rows.values()):>11,}")  # type: ignore[union-attr]
        if stage.stage == "build":
            detail = stage.detail
            log(f"  models built {detail['models']:>11,}   tests passed {detail['tests_passed']:,}, "
                f"warned {detail['tests_warned']:,}, failed {detail['tests_failed']:,}")
            log(f"  dbt invocation {detail['dbt_invocation_id']}")
    if run.message:
        log(run.message)
    total = ((run.ended_at or utc_now()) - run.started_at).total_seconds()
    log(f"  wall time {total:.1f} s")


def run_command(args: argparse.Namespace) -> int:
    run_date = args.date or dt.date.today()
    target = args.target or "dev"
    run = RunRecord(command="run", target=target, run_date=run_date)
    dbt_vars: dict[str, object] = {"run_date": run_date.isoformat()}
    if args.date:
        dbt_vars |= {"from_date": args.date.isoformat(), "to_date": args.date.isoformat()}
    sources = [name.strip() for name in args.sources.split(",") if name.strip()]
    results: dict[str, object] = {}
    on_duckdb = target != "bigquery"
    try:
        if not args.skip_extract:
            run_stage(run, "extract", extract_stage(run, sources, "duckdb" if on_duckdb else "bigquery"))
            if run.stages[-1].rows_out == 0 and not (args.force or args.date):
                run.status = "skipped"
                run.message = "no new data in any source: nothing to build (use --force to build anyway)"
        if run.status == "running" and not args.skip_build:
            run_stage(run, "build", build_stage(run, args.target, dbt_vars, args.full_refresh))
        if run.status == "running" and on_duckdb and not args.skip_export:
            run_stage(run, "export", export_stage(run, results))
            if not args.skip_train:
                run_stage(run, "train", train_stage(results))
        if run.status == "running":
            run.status = "success"
    except StageFailed as error:
        run.status = "failed"
        run.message = str(error)
    finally:
        run.ended_at = utc_now()
        if on_duckdb:
            write_run(duckdb_path(), run)
        print_summary(run)
    return 1 if run.status == "failed" else 0


def export_command(_: argparse.Namespace) -> int:
    manifest = export_training_set(duckdb_path())
    log(f"training_set version {manifest.version}: {manifest.row_count:,} rows -> {manifest.path}")
    return 0


def train_command(_: argparse.Namespace) -> int:
    try:
        print_training(train())
    except TrainingError as error:
        print(f"pipeline train: {error}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeline", description="extract -> dbt build -> export -> train")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="extract every source, dbt build, export, train")
    run_parser.add_argument("--date", type=dt.date.fromisoformat, help="build this day (YYYY-MM-DD) as of its end")
    run_parser.add_argument("--target", default=None, help="dbt target from profiles.yml (default: dev)")
    run_parser.add_argument("--sources", default=",".join(SOURCES), help="comma-separated (default: all)")
    run_parser.add_argument("--skip-extract", action="store_true")
    run_parser.add_argument("--skip-build", action="store_true")
    run_parser.add_argument("--skip-export", action="store_true")
    run_parser.add_argument("--skip-train", action="store_true")
    run_parser.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    run_parser.add_argument("--force", action="store_true", help="build even when no source had new data")
    run_parser.set_defaults(handler=run_command)
    commands.add_parser("export", help="export the training set").set_defaults(handler=export_command)
    commands.add_parser("train", help="train on the latest export").set_defaults(handler=train_command)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    code = args.handler(args)
    if args.command != "run":
        log(f"done in {time.perf_counter() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
