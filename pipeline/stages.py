"""The stages of a run: extract (dlt) -> build (dbt) -> export -> train, each timed and recorded.

A stage that fails for a transient reason is retried (pipeline/retry.py); one that fails for a
data or configuration reason raises StageFailed with a message a person can act on, and the run
stops there.
"""

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb

from extract.load import SOURCES, ExtractError, SourceLoad, duckdb_path, load_source
from pipeline.console import first_line, log, seconds
from pipeline.dbt_runner import DbtSummary, run_dbt
from pipeline.export import Manifest, export_training_set
from pipeline.monitoring import (
    DaysToRun,
    first_days,
    last_successful_build,
    latest_rows_loaded_at,
    model_row_counts,
    read_manifest,
)
from pipeline.published import published_path, refresh_published
from pipeline.retry import LOCK_MESSAGE, GaveUp, RetryPolicy, TransientError, describe_lock, retrying
from pipeline.run_journal import RunJournal, dbt_log_dir
from pipeline.run_log import RunRecord, StageRecord, utc_now
from pipeline.run_summary import failed_node_lines, quarantine_by_table, warned_tests
from pipeline.warehouse import WarehouseLocked, connect, relation_exists

if TYPE_CHECKING:
    from pipeline.train import TrainingResult

DBT_PROGRESS = re.compile(r"\b(\d+) of (\d+) (OK|PASS|WARN|ERROR|FAIL|SKIP)\b(.*)")
PROGRESS_EVERY = 5.0


class StageFailed(RuntimeError):
    """A stage failed for a reason the message gives; the run stops there."""


class StageSkipped(Exception):
    """A stage had nothing it could do (the message says why); the run goes on."""


@dataclass
class RunOptions:
    """What one run does; `run_date` None means today (UTC) and lets dbt pick the days to rebuild."""

    command: str = "run"
    run_date: dt.date | None = None
    target: str = "dev"
    sources: tuple[str, ...] = SOURCES
    skip_extract: bool = False
    skip_build: bool = False
    skip_export: bool = False
    skip_train: bool = False
    full_refresh: bool = False
    force: bool = False
    strict: bool = False
    report: bool = True
    results: dict[str, object] = field(default_factory=dict)

    @property
    def on_duckdb(self) -> bool:
        return self.target != "bigquery"


def run_stage(
    run: RunRecord, name: str, action: Callable[[StageRecord], None], journal: RunJournal | None = None
) -> StageRecord:
    """Run one stage, time it, record it (in the run's journal as it starts and ends), and print its progress line."""
    stage = StageRecord(stage=name, started_at=utc_now(), ended_at=utc_now(), status="running")
    run.stages.append(stage)
    if journal:
        journal.save()
    log(f"[{name}] started")
    try:
        action(stage)
        stage.status = "success"
    except StageSkipped as reason:
        stage.status = "skipped"
        stage.detail["reason"] = str(reason)
        log(f"[{name}] skipped: {reason}")
    except BaseException:
        stage.status = "failed"
        raise
    finally:
        stage.ended_at = utc_now()
        if journal:
            journal.save()
        retried = f", {stage.retries} retr{'y' if stage.retries == 1 else 'ies'}" if stage.retries else ""
        log(
            f"[{name}] {stage.status} in {seconds(stage.seconds)} (rows in {stage.rows_in:,}, out {stage.rows_out:,}"
            f"{retried})"
        )
    return stage


# ---------------------------------------------------------------- extract


def load_with_retries(name: str, destination: str, policy: RetryPolicy, stage: StageRecord) -> SourceLoad:
    retries: list[str] = []
    try:
        return retrying(lambda: load_source(name, destination), f"extract {name}", policy, "[extract] ", retries)
    except GaveUp as error:
        raise StageFailed(f"extract failed: {error}") from error
    except ExtractError as error:
        raise StageFailed(f"extract failed: {error} (a data or configuration error: not retried)") from error
    finally:
        stage.retries += len(retries)


def extract_stage(
    run: RunRecord, options: RunOptions, policy: RetryPolicy, journal: RunJournal | None = None
) -> Callable[[StageRecord], None]:
    destination = "duckdb" if options.on_duckdb else "bigquery"

    def action(stage: StageRecord) -> None:
        for name in options.sources:
            load = load_with_retries(name, destination, policy, stage)
            log(f"[extract] {load.describe()}")
            run.loads += [(load.source, load.dataset, load_id) for load_id in load.load_ids]
            run.source_rows += [(load.source, table, rows) for table, rows in sorted(load.rows.items())]
            stage.detail[load.source] = load.rows
            if journal:
                journal.save()
        stage.rows_out = run.rows_loaded

    return action


def nothing_new(run: RunRecord, options: RunOptions, policy: RetryPolicy) -> str | None:
    """Why this run has nothing to do (no source had new rows and its day is already built), else None."""
    if options.force or options.skip_extract or options.skip_build or run.rows_loaded > 0:
        return None
    if not options.on_duckdb:
        return "no new data: no source had new rows; nothing to build (--force builds anyway)"
    with connect(duckdb_path(), read_only=True, policy=policy, prefix="[run] ") as connection:
        built = last_successful_build(connection, run.target, run.run_date)
        latest = latest_rows_loaded_at(connection)
    if built is None or (latest is not None and latest > built[1]):
        return None
    return (
        f"no new data: no source had new rows, and {run.run_date} was built by run {built[0]} after the "
        "last rows arrived; nothing to do (--force builds anyway)"
    )


# ---------------------------------------------------------------- build


def dbt_vars(run: RunRecord, options: RunOptions, policy: RetryPolicy) -> dict[str, object]:
    """run_date, and for a run of a given day the range of days to (re)build: from the earliest day
    the rows loaded since the last successful build can change (late rows, updates of what the
    features read: monitoring.APP_AFFECTED_DAYS) to the day itself; its data tests check from the
    earliest day any of those rows lands on (tested_from_date), so a status change is tested too."""
    variables: dict[str, object] = {"run_date": run.run_date.isoformat()}
    if options.run_date is None or options.full_refresh:
        return variables
    days = DaysToRun(None, None)
    if options.on_duckdb:
        with connect(duckdb_path(), read_only=True, policy=policy, prefix="[build] ") as connection:
            built = last_successful_build(connection, options.target)
            days = first_days(connection, built[1] if built else None)
    from_date = min(days.affected or run.run_date, run.run_date)
    tested_from_date = min(days.loaded or from_date, from_date)
    return variables | {
        "from_date": from_date.isoformat(),
        "to_date": run.run_date.isoformat(),
        "tested_from_date": tested_from_date.isoformat(),
    }


class DbtProgress:
    """Turns dbt's output into a progress line every few seconds, and failures as they happen."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def __call__(self, line: str) -> None:
        match = DBT_PROGRESS.search(line)
        if not match or " hook" in line:
            return
        done, total, status, rest = match.groups()
        now = time.perf_counter()
        if status in ("ERROR", "FAIL"):
            log(f"[build] {status} {first_line(rest.split('[')[0], 140).strip(' .')}")
        elif now - self.last >= PROGRESS_EVERY or done == total:
            log(f"[build] {done} of {total} nodes done ({seconds(now - self.started)})")
            self.last = now


def dbt_build(options: RunOptions, variables: dict[str, object], journal: RunJournal | None = None) -> DbtSummary:
    """`dbt build` (unit tests excluded: they test the SQL in CI, not the data); TransientError on a lock.

    With a journal, dbt writes its JSON log into the run's log folder and keeps the run's lock (so a
    killed build is read back from its log), and a build it killed is summarised from that log.
    """
    args = ["build", "--exclude-resource-type", "unit_test"] + (["--full-refresh"] if options.full_refresh else [])
    extra: dict[str, object] = (
        {"log_dir": dbt_log_dir(journal.run.run_id), "pass_fds": journal.inherited_fds} if journal else {}
    )
    summary = run_dbt(args, target=options.target, dbt_vars=variables, on_line=DbtProgress(), **extra)  # type: ignore[arg-type]
    if not summary.success and LOCK_MESSAGE in "\n".join([*summary.failures, summary.output_tail]):
        text = next(t for t in [*summary.failures, summary.output_tail] if LOCK_MESSAGE in t)
        raise TransientError(describe_lock(text))
    return summary


def validation_message(summary: DbtSummary, options: RunOptions, policy: RetryPolicy) -> str:
    """Which tests (or models) failed, each with its cause (the database's own message) and, for a
    failing test, the table that keeps its rows (when it exists) and a few of them."""
    failed = summary.failed_nodes()
    killed = [summary.ended] if summary.ended else []
    if not failed and killed:
        return "build failed: " + killed[0]
    if not failed:
        return "dbt build failed before running any node:\n  " + "\n  ".join(summary.failures[:3])
    tests = sum(1 for node in failed if node["resource_type"] == "test")
    lines = [
        f"validation failed: {tests} dbt test(s) and {len(failed) - tests} other node(s) failed; "
        f"{summary.count('model', 'skipped')} models downstream of them were skipped and nothing was exported",
    ]
    if options.on_duckdb:
        with connect(duckdb_path(), read_only=True, policy=policy) as connection:
            lines += failed_node_lines(failed, connection)
    else:
        lines += failed_node_lines(failed, None)
    return "\n".join([*lines, *killed])


def record_quarantine(stage: StageRecord, summary: DbtSummary, options: RunOptions, policy: RetryPolicy) -> None:
    """The quarantine per source table after a build (passed or failed) and the tests that warned
    with a row each kept, for the run summary; when this build did not rebuild the quarantine (a
    failure upstream), the summary says it is an earlier build's."""
    if not options.on_duckdb:
        stage.detail["warned_tests"] = warned_tests(summary.node_results)
        return
    with connect(duckdb_path(), read_only=True, policy=policy) as connection:
        stage.detail["quarantine"] = quarantine_by_table(connection)
        stage.detail["warned_tests"] = warned_tests(summary.node_results, connection)
    rebuilt = any(
        str(node["unique_id"]).endswith(".int_quarantined_rows") and node["status"] == "success"
        for node in summary.node_results
    )
    if stage.detail["quarantine"] and not rebuilt:
        stage.detail["quarantine_stale"] = True


def record_build(run: RunRecord, stage: StageRecord, summary: DbtSummary) -> None:
    run.node_results = summary.node_results
    run.dbt_invocation_id = summary.invocation_id
    stage.detail = {
        "dbt_invocation_id": summary.invocation_id,
        "dbt_vars": run.dbt_vars,
        "models": summary.count("model", "success"),
        "models_skipped": summary.count("model", "skipped"),
        "tests_passed": summary.count("test", "pass"),
        "tests_warned": summary.count("test", "warn"),
        "tests_failed": summary.count("test", "fail", "error"),
        "nodes_done": summary.nodes_done(),
        "nodes_total": summary.nodes_total,
        "published": bool(summary.published),
    }


def build_stage(
    run: RunRecord, options: RunOptions, policy: RetryPolicy, journal: RunJournal | None = None
) -> Callable[[StageRecord], None]:
    def action(stage: StageRecord) -> None:
        run.dbt_vars = dbt_vars(run, options, policy)
        days = f" for {run.dbt_vars['from_date']} .. {run.dbt_vars['to_date']}" if "from_date" in run.dbt_vars else ""
        log(f"[build] dbt build{days} (run_date {run.run_date})")
        retries: list[str] = []
        try:
            summary = retrying(
                lambda: dbt_build(options, run.dbt_vars, journal), "dbt build", policy, "[build] ", retries
            )
        except GaveUp as error:
            raise StageFailed(f"build failed: {error}") from error
        finally:
            stage.retries = len(retries)
        record_build(run, stage, summary)
        if options.on_duckdb and summary.published:
            publish_file(stage, policy)
        record_quarantine(stage, summary, options, policy)
        if not summary.success:
            raise StageFailed(validation_message(summary, options, policy))
        if options.on_duckdb:
            with connect(duckdb_path(), read_only=True, policy=policy) as connection:
                run.model_rows = model_row_counts(connection, summary.node_results, read_manifest())
        stage.rows_in = sum(m.rows_in or 0 for m in run.model_rows if m.layer == "staging")
        stage.rows_out = sum(m.rows_out or 0 for m in run.model_rows if m.layer == "marts")

    return action


# ---------------------------------------------------------------- export and train


def publish_file(stage: StageRecord, policy: RetryPolicy) -> None:
    """Copy the gold dbt just published into the published file readers use (pipeline/published.py)."""
    try:
        publication = refresh_published(duckdb_path(), policy)
    except OSError as error:
        raise StageFailed(f"publishing {published_path()} failed: {unwritable(error)}") from error
    if publication:
        stage.detail["published_file"] = str(published_path())
        log(
            f"[build] published gold of invocation {publication.invocation_id} to {published_path()} "
            f"({', '.join(f'{name} {rows:,}' for name, rows in publication.tables.items())}; "
            f"{seconds(publication.seconds)})"
        )


def unwritable(error: OSError) -> str:
    """'cannot write /x/y: Read-only file system' for an OSError, without a traceback."""
    where = error.filename or ""
    return f"cannot write {where}: {error.strerror or error}".replace("write : ", "write: ")


def export_from_published(policy: RetryPolicy) -> Manifest:
    """Bring the published file up to date (a publish a killed run left uncopied), then export from it."""
    refresh_published(duckdb_path(), policy)
    if not published_path().exists():
        raise StageSkipped("nothing has been published yet: a dbt build whose tests pass publishes the gold")
    return export_training_set(str(published_path()))


def export_stage(run: RunRecord, options: RunOptions, policy: RetryPolicy) -> Callable[[StageRecord], None]:
    def action(stage: StageRecord) -> None:
        retries: list[str] = []
        try:
            manifest: Manifest = retrying(lambda: export_from_published(policy), "export", policy, "[export] ", retries)
        except (GaveUp, WarehouseLocked) as error:
            raise StageFailed(f"export failed: {error}") from error
        except OSError as error:
            raise StageFailed(f"export failed: {unwritable(error)}") from error
        except duckdb.IOException as error:  # DuckDB writing the Parquet: a read-only folder, a full disk
            raise StageFailed(f"export failed: {first_line(str(error))}") from error
        finally:
            stage.retries = len(retries)
        stage.rows_in = stage.rows_out = manifest.row_count
        stage.detail = {"version": manifest.version, "content_hash": manifest.content_hash, "reused": manifest.reused}
        options.results["manifest"] = manifest
        log(
            f"[export] training_set version {manifest.version}: {manifest.row_count:,} rows, "
            f"{manifest.partitions} date partitions{' (unchanged, reused)' if manifest.reused else ''}"
        )

    return action


def train_stage(options: RunOptions, policy: RetryPolicy | None = None) -> Callable[[StageRecord], None]:
    def action(stage: StageRecord) -> None:
        from pipeline.train import NothingToLearn, TrainingError, train  # scikit-learn loads only when a run trains

        try:
            training = train()
        except NothingToLearn as error:
            raise StageSkipped(no_transactions(policy) or str(error)) from error
        except TrainingError as error:
            if "needs rows of both classes" in str(error):
                raise StageSkipped(f"{error}: not enough matured labels of both classes yet") from error
            raise StageFailed(f"train failed: {error}") from error
        stage.rows_in = training.train_rows + training.validation_rows
        stage.detail = {"roc_auc": training.roc_auc, "pr_auc": training.pr_auc, "model": training.model_path}
        options.results["training"] = training
        log(training_line(training))

    return action


def no_transactions(policy: RetryPolicy | None) -> str | None:
    """The reason when the published gold has no transaction at all (every row quarantined, or none
    loaded): then no label could ever mature, whatever the run date."""
    path = published_path()
    if not path.exists():
        return None
    with connect(str(path), read_only=True, policy=policy) as connection:
        if not relation_exists(connection, "marts", "fct_transaction_features"):
            return None
        [(rows,)] = connection.sql("select count(*) from marts.fct_transaction_features").fetchall()
    if rows:
        return None
    return (
        "no transactions: marts.fct_transaction_features is empty (every transaction was quarantined, or none "
        "was loaded: see the quarantine in the summary)"
    )


def training_line(training: "TrainingResult") -> str:
    return (
        f"[train] validation ROC AUC {training.roc_auc:.3f} (constant baseline {training.baseline_roc_auc:.3f}), "
        f"PR AUC {training.pr_auc:.3f} (baseline {training.baseline_pr_auc:.3f}) "
        f"on {training.validation_rows:,} rows; model {training.model_path}"
        + (
            f" (fitted on {training.fitted_rows:,} of {training.train_rows:,} train rows: every fraud, "
            f"{training.negative_sample_rate:.1%} of the rest, weighted)"
            if training.fitted_rows < training.train_rows
            else ""
        )
    )
