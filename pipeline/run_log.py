"""The pipeline's run log, kept across runs in the warehouse's `monitoring` schema.

    monitoring.pipeline_runs        one row per run: run_id, command, target, run_date, started_at, ended_at,
                                    seconds, status (success|failed|skipped), message, rows_loaded,
                                    dbt_invocation_id, dbt_vars
    monitoring.pipeline_stage_runs  one row per stage: run_id, stage, started_at, ended_at, seconds, status,
                                    rows_in, rows_out, retries, detail (JSON)
    monitoring.pipeline_run_loads   run_id, source, dataset, load_id: the dlt loads a run made
    monitoring.source_rows          run_id, source, table_name, rows_loaded
    monitoring.dbt_node_results     run_id, invocation_id, unique_id, resource_type, status, seconds, failures,
                                    message, relation_name: every model, test, seed and snapshot of a build
    monitoring.model_row_counts     run_id, invocation_id, unique_id, name, layer, resource_type, materialized,
                                    relation_name, rows_in, rows_out: rows of each relation after a build and
                                    of its direct parents
    monitoring.load_lineage         (view) each dlt load id -> the run that loaded it -> the dbt invocation
                                    that built on it
    monitoring.alerts, monitoring.backfill_days: see pipeline/alerts.py and pipeline/backfill.py

When the warehouse is locked while a run is being recorded, the run is kept in
`<data dir>/monitoring/unrecorded_runs.jsonl` and recorded by the next run that gets the lock.
"""

import datetime as dt
import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from extract.load import data_dir
from pipeline.console import log
from pipeline.warehouse import WarehouseLocked, connect

DDL = """
create schema if not exists monitoring;
create table if not exists monitoring.pipeline_runs (
    run_id varchar primary key, command varchar, target varchar, run_date date,
    started_at timestamp, ended_at timestamp, status varchar, message varchar
);
alter table monitoring.pipeline_runs add column if not exists seconds double;
alter table monitoring.pipeline_runs add column if not exists rows_loaded bigint;
alter table monitoring.pipeline_runs add column if not exists dbt_invocation_id varchar;
alter table monitoring.pipeline_runs add column if not exists dbt_vars varchar;
create table if not exists monitoring.pipeline_stage_runs (
    run_id varchar, stage varchar, started_at timestamp, ended_at timestamp, seconds double,
    status varchar, rows_in bigint, rows_out bigint, detail varchar
);
alter table monitoring.pipeline_stage_runs add column if not exists retries integer;
create table if not exists monitoring.pipeline_run_loads (
    run_id varchar, source varchar, dataset varchar, load_id varchar
);
create table if not exists monitoring.source_rows (
    run_id varchar, source varchar, table_name varchar, rows_loaded bigint
);
create table if not exists monitoring.dbt_node_results (
    run_id varchar, invocation_id varchar, unique_id varchar, resource_type varchar,
    status varchar, seconds double, failures bigint, message varchar
);
alter table monitoring.dbt_node_results add column if not exists relation_name varchar;
create table if not exists monitoring.model_row_counts (
    run_id varchar, invocation_id varchar, unique_id varchar, name varchar, layer varchar,
    resource_type varchar, materialized varchar, relation_name varchar, rows_in bigint, rows_out bigint
);
create table if not exists monitoring.alerts (
    alert_id varchar primary key, rule varchar, subject varchar, status varchar,
    opened_at timestamp, opened_by_run varchar, last_seen_at timestamp, last_seen_run varchar,
    resolved_at timestamp, resolved_by_run varchar, value double, baseline double, message varchar
);
create table if not exists monitoring.backfill_days (
    target varchar, day date, status varchar, run_id varchar, started_at timestamp, ended_at timestamp,
    message varchar, primary key (target, day)
);
create or replace view monitoring.load_lineage as
select
    loads.source, loads.dataset, loads.load_id, runs.run_id, runs.command, runs.run_date, runs.status as run_status,
    runs.dbt_invocation_id
from monitoring.pipeline_run_loads as loads
inner join monitoring.pipeline_runs as runs on loads.run_id = runs.run_id;
"""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class StageRecord:
    stage: str
    started_at: dt.datetime
    ended_at: dt.datetime
    status: str
    rows_in: int = 0
    rows_out: int = 0
    retries: int = 0
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


@dataclass
class ModelRows:
    """Rows of one relation a build made (rows_out) and of its direct parents (rows_in)."""

    unique_id: str
    name: str
    layer: str
    resource_type: str
    materialized: str
    relation_name: str
    rows_in: int | None
    rows_out: int | None


@dataclass
class RunRecord:
    command: str
    target: str
    run_date: dt.date
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: dt.datetime = field(default_factory=utc_now)
    ended_at: dt.datetime | None = None
    status: str = "running"
    message: str = ""
    dbt_invocation_id: str = ""
    dbt_vars: dict[str, object] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    loads: list[tuple[str, str, str]] = field(default_factory=list)
    source_rows: list[tuple[str, str, int]] = field(default_factory=list)
    node_results: list[dict[str, object]] = field(default_factory=list)
    model_rows: list[ModelRows] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return ((self.ended_at or utc_now()) - self.started_at).total_seconds()

    @property
    def rows_loaded(self) -> int:
        return sum(rows for _, _, rows in self.source_rows)

    def stage(self, name: str) -> StageRecord | None:
        return next((stage for stage in self.stages if stage.stage == name), None)


def ensure_schema(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute(DDL)


RUN_COLUMNS = (
    "run_id, command, target, run_date, started_at, ended_at, status, message, seconds, rows_loaded, "
    "dbt_invocation_id, dbt_vars"
)
STAGE_COLUMNS = "run_id, stage, started_at, ended_at, seconds, status, rows_in, rows_out, detail, retries"
NODE_COLUMNS = "run_id, invocation_id, unique_id, resource_type, status, seconds, failures, message, relation_name"


def insert(connection: duckdb.DuckDBPyConnection, table: str, columns: str, rows: list[list[object]]) -> None:
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        connection.executemany(f"insert into monitoring.{table} ({columns}) values ({marks})", rows)


def insert_run(connection: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    """Append the run, its stages, dlt loads, rows, dbt node results and row counts."""
    connection.execute("delete from monitoring.pipeline_runs where run_id = ?", [run.run_id])
    dbt_vars = json.dumps(run.dbt_vars, default=str)
    insert(
        connection,
        "pipeline_runs",
        RUN_COLUMNS,
        [
            [
                run.run_id,
                run.command,
                run.target,
                run.run_date,
                run.started_at,
                run.ended_at,
                run.status,
                run.message,
                run.seconds,
                run.rows_loaded,
                run.dbt_invocation_id or None,
                dbt_vars,
            ]
        ],
    )
    insert(
        connection,
        "pipeline_stage_runs",
        STAGE_COLUMNS,
        [
            [
                run.run_id,
                s.stage,
                s.started_at,
                s.ended_at,
                s.seconds,
                s.status,
                s.rows_in,
                s.rows_out,
                json.dumps(s.detail, default=str),
                s.retries,
            ]
            for s in run.stages
        ],
    )
    insert(
        connection,
        "pipeline_run_loads",
        "run_id, source, dataset, load_id",
        [[run.run_id, *load] for load in run.loads],
    )
    insert(
        connection,
        "source_rows",
        "run_id, source, table_name, rows_loaded",
        [[run.run_id, *rows] for rows in run.source_rows],
    )
    insert(
        connection,
        "dbt_node_results",
        NODE_COLUMNS,
        [
            [
                run.run_id,
                n["invocation_id"],
                n["unique_id"],
                n["resource_type"],
                n["status"],
                n["seconds"],
                n["failures"],
                n["message"],
                n.get("relation_name"),
            ]
            for n in run.node_results
        ],
    )
    insert(
        connection,
        "model_row_counts",
        "run_id, invocation_id, unique_id, name, layer, resource_type, materialized, relation_name, rows_in, rows_out",
        [
            [
                run.run_id,
                run.dbt_invocation_id,
                m.unique_id,
                m.name,
                m.layer,
                m.resource_type,
                m.materialized,
                m.relation_name,
                m.rows_in,
                m.rows_out,
            ]
            for m in run.model_rows
        ],
    )


def pending_file() -> Path:
    return data_dir() / "monitoring" / "unrecorded_runs.jsonl"


def run_from_json(text: str) -> RunRecord:
    data = json.loads(text)
    when = dt.datetime.fromisoformat
    data["run_date"] = dt.date.fromisoformat(data["run_date"])
    data["started_at"] = when(data["started_at"])
    data["ended_at"] = when(data["ended_at"]) if data["ended_at"] else None
    data["stages"] = [
        StageRecord(**{**stage, "started_at": when(stage["started_at"]), "ended_at": when(stage["ended_at"])})
        for stage in data["stages"]
    ]
    data["loads"] = [tuple(load) for load in data["loads"]]
    data["source_rows"] = [tuple(rows) for rows in data["source_rows"]]
    data["model_rows"] = [ModelRows(**rows) for rows in data["model_rows"]]
    return RunRecord(**data)


def write_run(duckdb_path: str, run: RunRecord) -> bool:
    """Record the run (and any run a lock kept from being recorded); False when the warehouse stayed locked."""
    pending = pending_file()
    try:
        with connect(duckdb_path) as connection:
            connection.begin()
            ensure_schema(connection)
            earlier = pending.read_text().splitlines() if pending.exists() else []
            for line in earlier:
                insert_run(connection, run_from_json(line))
            insert_run(connection, run)
            connection.commit()
        pending.unlink(missing_ok=True)
        if earlier:
            log(f"[monitoring] recorded {len(earlier)} earlier run(s) a locked warehouse had kept from the run log")
        return True
    except WarehouseLocked:
        pending.parent.mkdir(parents=True, exist_ok=True)
        with pending.open("a") as file:
            file.write(json.dumps(asdict(run), default=str) + "\n")
        log(f"[monitoring] the warehouse is still locked, so this run is kept in {pending}; the next run records it")
        return False
