"""`pipeline`: extract (dlt) -> build (dbt) -> export -> train, for a day, a range of days or continuously.

    pipeline run [--date D] [--target T] [--sources app,events,...] [--skip-extract|build|export|train]
                 [--full-refresh] [--force] [--strict]
    pipeline backfill --start S --end E [--restart] [--demo [--seed N] [--scale N]] [--strict]
    pipeline stream [--interval SECONDS] [--max-batches N]
    pipeline status [--runs N] [--strict]
    pipeline report      regenerate the HTML run report
    pipeline export      export the current training set (versioned Parquet + manifest)
    pipeline train       train on the latest export and print validation metrics
    pipeline doctor      check each configured source before a run (exit 1: a run would fail or produce nothing)

dbt stays usable on its own: this command only runs dlt, then `dbt build`, then Python steps.
Exit codes: 0 success or nothing to do, 1 failed, 3 alerts open with --strict.
"""

import argparse
import datetime as dt
import sys
import time

from extract.load import SOURCES, duckdb_path
from pipeline.backfill import DemoReplay, run_backfill
from pipeline.console import log
from pipeline.export import Manifest
from pipeline.report import write_report
from pipeline.runner import EXIT_FAILED, EXIT_OK, execute_run
from pipeline.stages import RunOptions, training_line
from pipeline.status import show_status
from pipeline.stream import run_stream


def sources(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SOURCES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown source(s) {', '.join(unknown)}: choose from {', '.join(SOURCES)}")
    return names


def run_options(args: argparse.Namespace, command: str) -> RunOptions:
    return RunOptions(
        command=command,
        run_date=getattr(args, "date", None),
        target=args.target or "dev",
        sources=args.sources,
        skip_extract=getattr(args, "skip_extract", False),
        skip_build=getattr(args, "skip_build", False),
        skip_export=getattr(args, "skip_export", False),
        skip_train=getattr(args, "skip_train", False),
        full_refresh=getattr(args, "full_refresh", False),
        force=getattr(args, "force", False),
        strict=getattr(args, "strict", False),
        report=not getattr(args, "no_report", False),
    )


def run_command(args: argparse.Namespace) -> int:
    from orchestration.run import RunOptions as DayOptions
    from orchestration.run import run_day, utc_today

    return run_day(
        DayOptions(
            day=args.date or utc_today(),
            target=args.target,
            sources=args.sources,
            skip_extract=args.skip_extract,
            skip_build=args.skip_build,
            skip_export=args.skip_export,
            skip_train=args.skip_train,
            full_refresh=args.full_refresh,
        )
    )


def backfill_command(args: argparse.Namespace) -> int:
    demo = DemoReplay(args.seed, args.scale) if args.demo else None
    return run_backfill(args.start, args.end, run_options(args, "backfill"), restart=args.restart, demo=demo)


def stream_command(args: argparse.Namespace) -> int:
    return run_stream(run_options(args, "stream"), args.interval, args.max_batches)


def status_command(args: argparse.Namespace) -> int:
    return show_status(args.runs, args.strict)


def report_command(_: argparse.Namespace) -> int:
    path = write_report(duckdb_path())
    if path:
        log(f"report {path}")
    return EXIT_OK if path else EXIT_FAILED


def export_command(_: argparse.Namespace) -> int:
    """The export stage alone, as a run: retried on a lock, recorded, summarised, measured."""
    options = RunOptions(command="export", skip_extract=True, skip_build=True, skip_train=True, report=False)
    outcome = execute_run(options)
    manifest = options.results.get("manifest")
    if isinstance(manifest, Manifest):
        log(f"training_set version {manifest.version}: {manifest.row_count:,} rows -> {manifest.path}")
    return outcome.exit_code


def train_command(_: argparse.Namespace) -> int:
    from pipeline.train import TrainingError, train

    try:
        log(training_line(train()))
    except TrainingError as error:
        print(f"pipeline train: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def doctor_command(_: argparse.Namespace) -> int:
    from pipeline.doctor import run_doctor

    return run_doctor()


def add_common(parser: argparse.ArgumentParser, stages: bool = True) -> None:
    parser.add_argument("--target", default=None, help="dbt target from profiles.yml (default: dev)")
    parser.add_argument("--sources", type=sources, default=SOURCES, help="comma-separated (default: all)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when an alert is open after the run")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate the HTML report")
    if stages:
        for stage in ("extract", "build", "export", "train"):
            parser.add_argument(f"--skip-{stage}", action="store_true", help=f"do not run the {stage} stage")
        parser.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
        parser.add_argument("--force", action="store_true", help="build even when no source had new data")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pipeline", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="extract, dbt build, export, train (one run)")
    run.add_argument("--date", type=dt.date.fromisoformat, help="build this day (YYYY-MM-DD) as of its end")
    add_common(run)
    run.set_defaults(handler=run_command)

    backfill = commands.add_parser("backfill", help="one run per day from --start to --end, resumable")
    backfill.add_argument("--start", type=dt.date.fromisoformat, required=True)
    backfill.add_argument("--end", type=dt.date.fromisoformat, required=True)
    backfill.add_argument("--restart", action="store_true", help="run days a previous backfill already did")
    backfill.add_argument("--demo", action="store_true", help="regenerate the demo sources as of each day first")
    backfill.add_argument("--seed", type=int, default=42, help="demo seed (with --demo; default 42)")
    backfill.add_argument("--scale", type=int, default=200_000, help="demo transactions (with --demo; default 200000)")
    add_common(backfill)
    backfill.set_defaults(handler=backfill_command)

    stream = commands.add_parser("stream", help="micro-batches of events and app rows until Ctrl-C")
    stream.add_argument("--interval", type=float, default=10.0, help="seconds between batches (default 10)")
    stream.add_argument("--max-batches", type=int, default=None, help="stop after N batches")
    add_common(stream, stages=False)
    stream.set_defaults(handler=stream_command, sources=("events", "app"))

    status = commands.add_parser("status", help="last runs, source freshness, open alerts")
    status.add_argument("--runs", type=int, default=10, help="how many runs to list (default 10)")
    status.add_argument("--strict", action="store_true", help="exit 3 when an alert is open")
    status.set_defaults(handler=status_command)

    commands.add_parser("report", help="regenerate the HTML run report").set_defaults(handler=report_command)
    commands.add_parser("export", help="export the training set").set_defaults(handler=export_command)
    commands.add_parser("train", help="train on the latest export").set_defaults(handler=train_command)
    commands.add_parser("doctor", help="check each configured source before a run").set_defaults(handler=doctor_command)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    code = args.handler(args)
    if args.command in ("export", "train", "report"):
        log(f"done in {time.perf_counter() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
