"""`pipeline`: the daily job (extract -> build -> export -> train) in this process, and its tools.

    pipeline run [--date D] [--target T] [--sources app,events,...] [--skip-extract|build|export|train]
                 [--full-refresh]
    pipeline export      the export step alone (versioned Parquet + manifest of the published training set)
    pipeline train       the training step alone (on the latest export)
    pipeline status      the last runs and backfills (Dagster's), source freshness, open alerts
    pipeline report      regenerate the HTML report (data/reports/index.html)
    pipeline doctor      check each configured source before a run (exit 1: a run would fail or produce nothing)

`pipeline run` materializes the Dagster job `daily` for one day (a partition) without a daemon;
schedules, sensors, backfills and the run history live in Dagster (`make dagster`).
dbt stays usable on its own. Exit codes: 0 success, 1 failed, 130 interrupted by Ctrl-C (SIGINT),
143 by SIGTERM (orchestration/run.py).
"""

import argparse
import datetime as dt
import sys

from extract.load import SOURCES
from orchestration.run import RunOptions, run_day, utc_today
from pipeline.console import log


def sources(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SOURCES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown source(s) {', '.join(unknown)}: choose from {', '.join(SOURCES)}")
    return names


def run_command(args: argparse.Namespace) -> int:
    return run_day(
        RunOptions(
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


def export_command(_: argparse.Namespace) -> int:
    return run_day(RunOptions(day=utc_today(), skip_extract=True, skip_build=True, skip_train=True))


def train_command(_: argparse.Namespace) -> int:
    return run_day(RunOptions(day=utc_today(), skip_extract=True, skip_build=True, skip_export=True))


def status_command(args: argparse.Namespace) -> int:
    from pipeline.reporting.status import show_status

    return show_status(args.runs, args.strict)


def report_command(_: argparse.Namespace) -> int:
    from orchestration.instance import get_instance
    from pipeline.reporting.report import write_report

    path = write_report(get_instance())
    if path:
        log(f"report {path}")
    return 0 if path else 1


def doctor_command(_: argparse.Namespace) -> int:
    from pipeline.doctor import run_doctor

    return run_doctor()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pipeline", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="extract, dbt build, export, train for one day (the daily job, in process)")
    run.add_argument("--date", type=dt.date.fromisoformat, help="the day (partition), YYYY-MM-DD; default today")
    run.add_argument("--target", default=None, help="dbt target from profiles.yml (default: DBT_TARGET or dev)")
    run.add_argument("--sources", type=sources, default=None, help="comma-separated sources to extract (default: all)")
    for stage in ("extract", "build", "export", "train"):
        run.add_argument(f"--skip-{stage}", action="store_true", help=f"do not run the {stage} step")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    run.set_defaults(handler=run_command)
    commands.add_parser("export", help="export the training set").set_defaults(handler=export_command)
    commands.add_parser("train", help="train on the latest export").set_defaults(handler=train_command)
    status = commands.add_parser("status", help="last runs and backfills, source freshness, open alerts")
    status.add_argument("--runs", type=int, default=10, help="how many runs to list (default 10)")
    status.add_argument("--strict", action="store_true", help="exit 3 when an alert is open")
    status.set_defaults(handler=status_command)
    commands.add_parser("report", help="regenerate the HTML run report").set_defaults(handler=report_command)
    commands.add_parser("doctor", help="check each configured source before a run").set_defaults(handler=doctor_command)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
