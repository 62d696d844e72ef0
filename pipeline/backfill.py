"""`pipeline backfill --start S --end E`: one `pipeline run --date D` per day, resumable.

Each day's outcome is kept in monitoring.backfill_days (target, day, status, run_id, ...). A
backfill stops at the first day that fails; running the same command again skips the days
already done and carries on from the failed one (`--restart` redoes every day). Extract and build
run for every day; export and train once, with the last day. With `--demo`, the demo sources are
regenerated as of each day first, so extract sees the data arrive day by day: a replay of the
pipeline's history (start from an empty warehouse, e.g. after `make clean`).
"""

import datetime as dt
from dataclasses import dataclass, replace

from extract.load import demo_dir, duckdb_path
from pipeline.console import log, seconds
from pipeline.report import write_report
from pipeline.retry import RetryPolicy
from pipeline.run_log import ensure_schema, utc_now
from pipeline.runner import EXIT_ALERTS, EXIT_FAILED, EXIT_OK, RunOutcome, execute_run
from pipeline.stages import RunOptions
from pipeline.warehouse import WarehouseLocked, connect


@dataclass
class DemoReplay:
    seed: int
    scale: int


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]


def days_done(target: str, days: list[dt.date], policy: RetryPolicy) -> dict[dt.date, str]:
    """{day: run_id} of the days in `days` a backfill already completed for `target`."""
    with connect(duckdb_path(), policy=policy, prefix="[backfill] ") as connection:
        ensure_schema(connection)
        rows = connection.execute(
            "select day, run_id from monitoring.backfill_days where target = ? and status = 'done' "
            "and day between ? and ?",
            [target, days[0], days[-1]],
        ).fetchall()
    return dict(rows)


def mark_day(target: str, day: dt.date, outcome: RunOutcome, policy: RetryPolicy) -> None:
    run = outcome.run
    status = "failed" if run.status == "failed" else "done"
    with connect(duckdb_path(), policy=policy, prefix="[backfill] ") as connection:
        connection.execute(
            "insert or replace into monitoring.backfill_days values (?, ?, ?, ?, ?, ?, ?)",
            [target, day, status, run.run_id, run.started_at, run.ended_at or utc_now(), run.message[:2000]],
        )


def replay_demo(day: dt.date, demo: DemoReplay) -> None:
    from demo.generate import generate  # the demo generator is only needed for a replay

    counts = generate(demo_dir(), seed=demo.seed, scale=demo.scale, as_of=day)
    log(
        f"[backfill] demo sources regenerated as of the end of {day}: "
        + ", ".join(f"{table} {count:,}" for table, count in counts.items())
    )


def run_backfill(
    start: dt.date,
    end: dt.date,
    options: RunOptions,
    restart: bool = False,
    demo: DemoReplay | None = None,
    policy: RetryPolicy | None = None,
) -> int:
    """Run every day from `start` to `end`; the exit code of the backfill."""
    policy = policy or RetryPolicy.from_env()
    if end < start:
        log(f"backfill: --end {end} is before --start {start}")
        return EXIT_FAILED
    days = days_between(start, end)
    try:
        done = {} if restart else days_done(options.target, days, policy)
    except WarehouseLocked as error:
        log(f"backfill failed: {error}")
        return EXIT_FAILED
    todo = [day for day in days if day not in done]
    log(
        f"[backfill] {len(days)} day(s) {start} .. {end}: {len(done)} already done, {len(todo)} to run"
        + (" (--restart: every day again)" if restart else "")
    )
    outcomes: list[tuple[dt.date, RunOutcome]] = []
    for day in todo:
        log(f"\n[backfill] ---- {day} ({days.index(day) + 1} of {len(days)}) ----")
        if demo:
            replay_demo(day, demo)
        last = day == days[-1]
        day_options = replace(
            options,
            command="backfill",
            run_date=day,
            force=options.force or restart,
            skip_export=options.skip_export or not last,
            skip_train=options.skip_train or not last,
            report=False,
            results={},
        )
        outcome = execute_run(day_options, policy)
        outcomes.append((day, outcome))
        mark_day(options.target, day, outcome, policy)
        if outcome.run.status == "failed":
            break
    return summarise(days, done, outcomes, options, policy)


def summarise(
    days: list[dt.date],
    done: dict[dt.date, str],
    outcomes: list[tuple[dt.date, RunOutcome]],
    options: RunOptions,
    policy: RetryPolicy,
) -> int:
    report = write_report(duckdb_path(), policy) if options.report and outcomes else None
    log(f"\n==== backfill {days[0]} .. {days[-1]}  target {options.target} ====")
    for day in days:
        if day in done:
            log(f"  {day}  done earlier (run {done[day]})")
    for day, outcome in outcomes:
        run = outcome.run
        log(f"  {day}  {run.status:<8} {seconds(run.seconds):>10}  rows loaded {run.rows_loaded:>9,}  run {run.run_id}")
    if report:
        log(f"  report {report}")
    failed = [day for day, outcome in outcomes if outcome.run.status == "failed"]
    if failed:
        remaining = len(days) - len(done) - len(outcomes)
        log(
            f"backfill stopped at {failed[0]} ({remaining} later day(s) not run). Fix the cause above and run the "
            "same command again: the days already done are skipped."
        )
        return EXIT_FAILED
    alerts = outcomes[-1][1].alerts if outcomes else []
    log(f"backfill complete: {len(outcomes)} day(s) run, {len(done)} skipped as done")
    return EXIT_ALERTS if options.strict and alerts else EXIT_OK
