"""A run's evidence while it runs, so that a killed run is recorded with what it really did.

    <data dir>/monitoring/runs/<run_id>.lock   held (flock) by the run and by its dbt process while alive
    <data dir>/monitoring/runs/<run_id>.json   the run as far as it got (stages, dlt loads), rewritten at
                                               every step (a temporary file renamed over it)
    <data dir>/logs/runs/<run_id>/dbt.log      dbt's JSON log of the run's build (kept)

A run writes a `running` row to monitoring.pipeline_runs when it starts and replaces it when it ends.
A run that was killed (SIGKILL, out of memory, a power cut) never replaces it. The next run (and
`pipeline status`) finds the journal whose lock nobody holds any more: the kernel drops an flock
when the last process holding it ends, and the lock is inherited by the dbt child, so a run whose
dbt still runs (orphaned) is not yet dead. The next run then records it as `killed` with the stages
it finished, the dlt loads it completed (those in the journal, and completed loads that started
after it and no run claims), what its dbt build did (read from dbt's JSON log: nodes finished,
published or not) and what monitoring.publish_log says of that invocation.
"""

import datetime as dt
import fcntl
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import duckdb

from extract.files import REJECTED_FILES_TABLE
from extract.load import SOURCES, data_dir
from pipeline.dbt_log import DbtLog, read_dbt_log
from pipeline.monitoring import load_time
from pipeline.published import marts_invocation
from pipeline.run_log import RunRecord, insert_run, run_from_json
from pipeline.warehouse import relation_exists, tables_in


def runs_dir() -> Path:
    return data_dir() / "monitoring" / "runs"


def dbt_log_dir(run_id: str) -> Path:
    return data_dir() / "logs" / "runs" / run_id


class RunJournal:
    """The liveness lock and the journal of one run."""

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        self.lock_fd: int | None = None

    @property
    def path(self) -> Path:
        return runs_dir() / f"{self.run.run_id}.json"

    def start(self) -> None:
        """Take the run's lock and write its journal; a data dir that cannot be written raises OSError."""
        runs_dir().mkdir(parents=True, exist_ok=True)
        self.lock_fd = os.open(runs_dir() / f"{self.run.run_id}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.save()

    @property
    def inherited_fds(self) -> tuple[int, ...]:
        """File descriptors a child process (dbt) keeps open, so the run counts as alive while it runs."""
        return (self.lock_fd,) if self.lock_fd is not None else ()

    def save(self) -> None:
        if self.lock_fd is None:
            return
        try:
            temporary = self.path.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(asdict(self.run), default=str))
            os.replace(temporary, self.path)
        except OSError:
            pass  # the journal is evidence for a kill, not a reason to fail a run

    def close(self) -> None:
        """The run is recorded: remove its journal and release its lock."""
        if self.lock_fd is None:
            return
        self.path.unlink(missing_ok=True)
        (runs_dir() / f"{self.run.run_id}.lock").unlink(missing_ok=True)
        os.close(self.lock_fd)
        self.lock_fd = None


def is_alive(run_id: str) -> bool:
    """Whether a process of the run (the pipeline or its dbt) still holds the run's lock."""
    lock = runs_dir() / f"{run_id}.lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def dead_runs(own_run_id: str | None = None) -> list[RunRecord]:
    """The journals of runs that ended without being recorded (killed), oldest first."""
    if not runs_dir().is_dir():
        return []
    found = []
    for path in sorted(runs_dir().glob("*.json")):
        run_id = path.stem
        if run_id == own_run_id or is_alive(run_id):
            continue
        try:
            found.append(run_from_json(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a journal cut short: its `running` row in the warehouse stays as the evidence
    return sorted(found, key=lambda run: run.started_at)


def published_by(connection: duckdb.DuckDBPyConnection, invocation_id: str) -> str | None:
    """Whether an invocation published: 'published' when `marts` holds its gold, else
    monitoring.publish_log's last word on it ('published', 'not_published'), else None."""
    if not invocation_id:
        return None
    held = marts_invocation(connection)
    if held and held[0] == invocation_id:
        return "published"
    if not relation_exists(connection, "monitoring", "publish_log"):
        return None
    rows = connection.execute(
        "select status from monitoring.publish_log where invocation_id = ? order by logged_at desc limit 1",
        [invocation_id],
    ).fetchall()
    return rows[0][0] if rows else None


def unclaimed_loads(connection: duckdb.DuckDBPyConnection, run: RunRecord) -> list[tuple[str, str, str]]:
    """Completed dlt loads that started while `run` ran (before the next run started) and no run claims."""
    [(next_start,)] = connection.execute(
        "select min(started_at) from monitoring.pipeline_runs where started_at > ? and run_id <> ?",
        [run.started_at, run.run_id],
    ).fetchall()
    claimed = {load_id for (load_id,) in connection.sql("select load_id from monitoring.pipeline_run_loads").fetchall()}
    claimed |= {load_id for _, _, load_id in run.loads}
    found = []
    for source in SOURCES:
        dataset = f"raw_{source}"
        if not relation_exists(connection, dataset, "_dlt_loads"):
            continue
        for (load_id,) in connection.sql(f"select load_id from {dataset}._dlt_loads where status = 0").fetchall():
            started = load_time(load_id)
            if load_id in claimed or started is None or started < run.started_at.replace(microsecond=0):
                continue
            if next_start is None or started < next_start:
                found.append((source, dataset, load_id))
    return found


def rows_of_load(connection: duckdb.DuckDBPyConnection, dataset: str, load_id: str) -> list[tuple[str, int]]:
    """(table, rows) a dlt load put in each table of its dataset."""
    rows = []
    for table in tables_in(connection, dataset):
        if not table.startswith("_dlt") and table != REJECTED_FILES_TABLE:
            [(count,)] = connection.execute(
                f"select count(*) from {dataset}.{table} where _dlt_load_id = ?", [load_id]
            ).fetchall()
            rows += [(table, int(count))] if count else []
    return rows


def last_sign_of_life(connection: duckdb.DuckDBPyConnection, run: RunRecord, dbt_log: DbtLog) -> dt.datetime:
    """When the run was last seen doing something: its journal written, a dlt load of it recorded,
    its dbt logging an event. The kill came after; exactly when is not known."""
    seen = [run.started_at, dbt_log.last_event_at, *(stage.ended_at for stage in run.stages)]
    journal = runs_dir() / f"{run.run_id}.json"
    if journal.exists():
        seen.append(dt.datetime.fromtimestamp(journal.stat().st_mtime, dt.UTC).replace(tzinfo=None))
    for _, dataset, load_id in run.loads:
        if relation_exists(connection, dataset, "_dlt_loads"):
            seen += [
                at
                for (at,) in connection.execute(
                    f"select cast(inserted_at as timestamp) from {dataset}._dlt_loads where load_id = ?", [load_id]
                ).fetchall()
            ]
    return max(filter(None, seen))


def killed_record(connection: duckdb.DuckDBPyConnection, run: RunRecord, found_by: str) -> RunRecord:
    """The journal of a killed run, completed with what its dbt build and dlt loads really did."""
    journaled = {load_id for _, _, load_id in run.loads}
    run.loads += unclaimed_loads(connection, run)
    for source, dataset, load_id in run.loads:
        if load_id not in journaled:  # loaded after the journal was last written: count its rows
            run.source_rows += [(source, table, rows) for table, rows in rows_of_load(connection, dataset, load_id)]
    dbt_log = read_dbt_log(dbt_log_dir(run.run_id) / "dbt.log")
    ended = last_sign_of_life(connection, run, dbt_log)
    running = [stage for stage in run.stages if stage.status == "running"]
    for stage in running:
        stage.status, stage.ended_at = "killed", ended
    build = run.stage("build")
    if build is not None and dbt_log.invocation_id:
        record_killed_build(connection, run, build.detail, dbt_log)
    where = f"during the {running[-1].stage} stage" if running else "between stages"
    run.status, run.ended_at = "killed", ended
    run.message = "\n".join(
        filter(
            None,
            [
                f"killed {where}: the run ended without recording an outcome (found by run {found_by}; last sign "
                f"of life {ended:%Y-%m-%d %H:%M:%S} UTC); {len(run.loads)} dlt load(s) it completed are linked "
                f"to it ({run.rows_loaded:,} rows)",
                dbt_log.describe() if build is not None and dbt_log.invocation_id else "",
                run.message,
            ],
        )
    )
    return run


def record_killed_build(
    connection: duckdb.DuckDBPyConnection, run: RunRecord, detail: dict[str, object], dbt_log: DbtLog
) -> None:
    logged = published_by(connection, dbt_log.invocation_id)
    if logged is not None and not dbt_log.published:
        dbt_log.published = logged == "published"
        dbt_log.publish_message = dbt_log.publish_message or f"{logged} (marts and monitoring.publish_log)"
    run.dbt_invocation_id = dbt_log.invocation_id
    run.node_results = dbt_log.node_results
    detail.update(
        {
            "dbt_invocation_id": dbt_log.invocation_id,
            "dbt_vars": run.dbt_vars,
            "nodes_done": len(dbt_log.node_results),
            "nodes_total": dbt_log.nodes_total,
            "models": dbt_log.count("model", "success"),
            "models_skipped": dbt_log.count("model", "skipped"),
            "tests_passed": dbt_log.count("test", "pass"),
            "tests_warned": dbt_log.count("test", "warn"),
            "tests_failed": dbt_log.count("test", "fail", "error"),
            "published": bool(dbt_log.published),
        }
    )


def record_dead_runs(connection: duckdb.DuckDBPyConnection, found_by: str) -> list[RunRecord]:
    """Record every killed run (in the open transaction of `connection`); the caller forgets them
    (forget_runs) once that transaction has committed."""
    recorded = []
    for run in dead_runs(found_by):
        insert_run(connection, killed_record(connection, run, found_by))
        recorded.append(run)
    return recorded


def forget_runs(runs: list[RunRecord]) -> None:
    for run in runs:
        (runs_dir() / f"{run.run_id}.json").unlink(missing_ok=True)
        (runs_dir() / f"{run.run_id}.lock").unlink(missing_ok=True)


def started_record(run: RunRecord) -> RunRecord:
    """The row a run writes when it starts: status running, no end, nothing done yet."""
    return replace(run, ended_at=None, status="running", stages=[], loads=[], source_rows=[], node_results=[])
