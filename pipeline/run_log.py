"""The pipeline's run log: one row per run and per stage, kept in the warehouse's `monitoring` schema.

    monitoring.pipeline_runs        run_id, command, target, run_date, started_at, ended_at, status, message
    monitoring.pipeline_stage_runs  run_id, stage, started_at, ended_at, seconds, status, rows_in, rows_out, detail
    monitoring.pipeline_run_loads   run_id, source, dataset, load_id           (dlt loads -> run)
    monitoring.dbt_node_results     run_id, invocation_id, unique_id, resource_type, status, seconds, failures

dbt's invocation id is on each stage row's detail and on every node result, so a dlt load id
links through the run to the dbt invocation that built on it.
"""

import datetime as dt
import json
import uuid
from contextlib import closing
from dataclasses import dataclass, field

import duckdb

DDL = """
create schema if not exists monitoring;
create table if not exists monitoring.pipeline_runs (
    run_id varchar primary key, command varchar, target varchar, run_date date,
    started_at timestamp, ended_at timestamp, status varchar, message varchar
);
create table if not exists monitoring.pipeline_stage_runs (
    run_id varchar, stage varchar, started_at timestamp, ended_at timestamp, seconds double,
    status varchar, rows_in bigint, rows_out bigint, detail varchar
);
create table if not exists monitoring.pipeline_run_loads (
    run_id varchar, source varchar, dataset varchar, load_id varchar
);
create table if not exists monitoring.dbt_node_results (
    run_id varchar, invocation_id varchar, unique_id varchar, resource_type varchar,
    status varchar, seconds double, failures bigint, message varchar
);
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
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


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
    stages: list[StageRecord] = field(default_factory=list)
    loads: list[tuple[str, str, str]] = field(default_factory=list)
    node_results: list[dict[str, object]] = field(default_factory=list)


def write_run(duckdb_path: str, run: RunRecord) -> None:
    """Append the run, its stages, its dlt loads and dbt node results to the monitoring schema."""
    with closing(duckdb.connect(duckdb_path)) as connection:
        connection.execute(DDL)
        connection.execute(
            "insert or replace into monitoring.pipeline_runs values (?, ?, ?, ?, ?, ?, ?, ?)",
            [run.run_id, run.command, run.target, run.run_date, run.started_at, run.ended_at, run.status, run.message],
        )
        connection.executemany(
            "insert into monitoring.pipeline_stage_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [run.run_id, s.stage, s.started_at, s.ended_at, s.seconds, s.status, s.rows_in, s.rows_out,
                 json.dumps(s.detail, default=str)]
                for s in run.stages
            ],
        )
        if run.loads:
            connection.executemany(
                "insert into monitoring.pipeline_run_loads values (?, ?, ?, ?)",
                [[run.run_id, *load] for load in run.loads],
            )
        if run.node_results:
            connection.executemany(
                "insert into monitoring.dbt_node_results values (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [run.run_id, node["invocation_id"], node["unique_id"], node["resource_type"], node["status"],
                     node["seconds"], node["failures"], node["message"]]
                    for node in run.node_results
                ],
            )
