"""`pipeline stream --interval SECONDS`: micro-batches of new events and app rows, served by the realtime view.

Every interval: dlt loads the `events` and `app` sources (only what is new), then the lambda view
marts.realtime_transaction_features is asked how many rows it serves from the batch layer and
how many from the speed layer (rows loaded since the last batch build). The view computes the
speed layer at query time, so no dbt run is needed between batches.

Ctrl-C (SIGINT) or SIGTERM ends the stream cleanly after the current batch (exit 0); a second
Ctrl-C stops at once. A batch that loads rows is recorded in the run log (command `stream`) and
refreshes the metrics file; the report is regenerated when the stream ends. A data or
configuration error stops the stream (exit 1); a transient error that outlasts its retries is
logged and the next batch tries again.
"""

import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from types import FrameType

from extract.load import duckdb_path
from pipeline.console import log, seconds
from pipeline.report import write_report
from pipeline.retry import GaveUp, RetryPolicy
from pipeline.run_log import RunRecord, StageRecord, utc_now
from pipeline.runner import EXIT_FAILED, EXIT_OK, RunOutcome, monitor
from pipeline.stages import RunOptions, StageFailed, extract_stage, run_stage
from pipeline.warehouse import WarehouseLocked, connect, relation_exists

STREAM_SOURCES = ("events", "app")
REALTIME_VIEW = ("marts", "realtime_transaction_features")


@dataclass
class Served:
    batch_rows: int = 0
    speed_rows: int = 0
    batch_until: object = None
    speed_latest: object = None

    def describe(self) -> str:
        return (
            f"realtime view serves {self.batch_rows:,} batch rows (to {self.batch_until or '-'}) + "
            f"{self.speed_rows:,} speed-layer rows (latest {self.speed_latest or '-'})"
        )


@dataclass
class StreamState:
    stop: threading.Event = field(default_factory=threading.Event)
    batches: int = 0
    batches_with_rows: int = 0
    rows: dict[str, int] = field(default_factory=dict)


def realtime_counts(policy: RetryPolicy) -> Served:
    with connect(duckdb_path(), read_only=True, policy=policy, prefix="[stream] ") as connection:
        rows = connection.sql(
            f"select served_from, count(*), max(transaction_date), max(created_at) "
            f"from {'.'.join(REALTIME_VIEW)} group by all"
        ).fetchall()
    served = Served()
    for layer, count, last_day, last_at in rows:
        if layer == "batch":
            served.batch_rows, served.batch_until = count, last_day
        else:
            served.speed_rows, served.speed_latest = count, last_at
    return served


def realtime_view_ready(policy: RetryPolicy) -> bool:
    with connect(duckdb_path(), read_only=True, policy=policy, prefix="[stream] ") as connection:
        return relation_exists(connection, *REALTIME_VIEW)


def one_batch(state: StreamState, options: RunOptions, policy: RetryPolicy) -> tuple[RunRecord, bool]:
    """Load the new rows of the stream's sources and count what the realtime view serves.

    Returns the batch's run and whether a failure was transient (retries ran out, the warehouse stayed locked).
    """
    run = RunRecord(command="stream", target=options.target, run_date=utc_now().date())
    started = time.perf_counter()
    transient = False
    try:
        run_stage(run, "extract", extract_stage(run, options, policy))
        served = Served()

        def count(stage: StageRecord) -> None:
            nonlocal served
            served = realtime_counts(policy)
            stage.rows_out = served.batch_rows + served.speed_rows
            stage.detail = {"batch_rows": served.batch_rows, "speed_rows": served.speed_rows}

        if run.rows_loaded:
            run_stage(run, "realtime", count)
        run.status = "success" if run.rows_loaded else "skipped"
        loaded = ", ".join(f"{source} +{rows:,}" for source, rows in by_source(run).items() if rows)
        log(
            f"[stream] batch {state.batches + 1}: "
            + (
                f"{loaded} rows in {seconds(time.perf_counter() - started)}; {served.describe()}"
                if run.rows_loaded
                else "no new data"
            )
        )
    except (StageFailed, GaveUp, WarehouseLocked) as error:
        run.status, run.message = "failed", str(error)
        transient = isinstance(error, GaveUp | WarehouseLocked) or isinstance(error.__cause__, GaveUp)
        log(
            f"[stream] batch {state.batches + 1} failed: {error}"
            + ("; the next batch tries again" if transient else "")
        )
    run.ended_at = utc_now()
    return run, transient


def by_source(run: RunRecord) -> dict[str, int]:
    totals: dict[str, int] = {}
    for source, _, rows in run.source_rows:
        totals[source] = totals.get(source, 0) + rows
    return totals


def install_stop_handlers(state: StreamState) -> dict[int, object]:
    """SIGINT/SIGTERM finish the current batch, then stop; a second SIGINT stops at once."""

    def handler(signum: int, _: FrameType | None) -> None:
        if state.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        state.stop.set()
        log(f"[stream] {signal.Signals(signum).name}: stopping after the current batch (Ctrl-C again to stop now)")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    return previous


def run_stream(
    options: RunOptions, interval: float, max_batches: int | None = None, policy: RetryPolicy | None = None
) -> int:
    policy = policy or RetryPolicy.from_env()
    options.sources = tuple(source for source in options.sources if source in STREAM_SOURCES) or STREAM_SOURCES
    if not realtime_view_ready(policy):
        log(f"stream: {'.'.join(REALTIME_VIEW)} does not exist yet: run `pipeline run` once first")
        return EXIT_FAILED
    # dlt would take SIGINT over during its normalize and load steps and fail the batch: keep ours, which
    # lets the batch finish
    os.environ.setdefault("RUNTIME__INTERCEPT_SIGNALS", "false")
    batch_options = replace(options, report=False)
    state = StreamState()
    previous = install_stop_handlers(state)
    log(f"[stream] every {interval:g} s: {', '.join(options.sources)} -> {'.'.join(REALTIME_VIEW)}; Ctrl-C stops")
    code = EXIT_OK
    try:
        while not state.stop.is_set():
            run, transient = one_batch(state, batch_options, policy)
            state.batches += 1
            for source, rows in by_source(run).items():
                state.rows[source] = state.rows.get(source, 0) + rows
            if run.status != "skipped":
                state.batches_with_rows += run.status == "success"
                monitor(run, batch_options, policy, RunOutcome(run), new_alerts_only=True)
            if run.status == "failed" and not transient:
                code = EXIT_FAILED
                break
            if max_batches is not None and state.batches >= max_batches:
                break
            state.stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    totals = ", ".join(f"{source} +{rows:,}" for source, rows in state.rows.items()) or "no rows"
    log(f"[stream] stopped after {state.batches} batch(es), {state.batches_with_rows} with new data: {totals}")
    report = write_report(duckdb_path(), policy) if options.report else None
    if report:
        log(f"  report {report}")
    return code
