"""Questions the pipeline asks the warehouse about itself: what is new since the last build, how
fresh each source is, what the quarantine holds. (How the runs went is Dagster's record:
orchestration/monitoring.py.)"""

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from extract.files import REJECTED_FILES_TABLE
from extract.load import SOURCES
from pipeline.warehouse.connections import relation_exists, tables_in
from pipeline.warehouse.dbt_runner import target_path

FIRST_DAY = dt.date(1970, 1, 1)
# the dbt view that says, per row of a load, the day it lands on and the earliest day it can change
# (models/monitoring/planning/): a run reads the rows of its new loads there
PLANNING_MODEL = "planning_load_days"
# the dataset of the real-time consumer: not a source `pipeline run` extracts, but its loads are new rows
STREAM = "stream"
PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def last_publish_time(connection: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    """When dbt last published gold (a build whose tests all passed: macros/publish.sql), None before that."""
    if not relation_exists(connection, "monitoring", "publish_log"):
        return None
    [(logged_at,)] = connection.sql(
        "select max(logged_at) from monitoring.publish_log where status = 'published'"
    ).fetchall()
    return logged_at


def completed_loads(connection: duckdb.DuckDBPyConnection, since: dt.datetime | None = None) -> dict[str, list[str]]:
    """Completed dlt load ids per source, only those finished after `since` when given."""
    loads: dict[str, list[str]] = {}
    existing = relations_in(connection)
    for source in (*SOURCES, STREAM):
        if (f"raw_{source}", "_dlt_loads") not in existing:
            continue
        rows = connection.execute(
            f"select load_id from raw_{source}._dlt_loads where status = 0 "
            "and (cast(? as timestamp) is null or cast(inserted_at as timestamp) > ?) order by load_id",
            [since, since],
        ).fetchall()
        loads[source] = [load_id for (load_id,) in rows]
    return loads


def relations_in(connection: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(schema, name) of every table and view, in one query: each look-up in DuckDB's
    information_schema costs about as much as all of them."""
    return set(connection.sql("select table_schema, table_name from information_schema.tables").fetchall())


def load_time(load_id: str | None) -> dt.datetime | None:
    """When a dlt load started (UTC): its id is the unix time."""
    return dt.datetime.fromtimestamp(float(load_id), dt.UTC).replace(tzinfo=None) if load_id else None


def newest_rows(connection: duckdb.DuckDBPyConnection, source: str) -> tuple[int, str | None]:
    """(rows, newest load id among them) of a source's raw tables, counting completed loads only.

    Not dlt's own tables, nor `rejected_files` (files the source could not read: no rows of them
    were loaded, and a rejection is no sign the source delivered data)."""
    schema = f"raw_{source}"
    rows, newest = 0, None
    for table in tables_in(connection, schema):
        if table.startswith("_dlt") or table == REJECTED_FILES_TABLE:
            continue
        [(count, load_id)] = connection.sql(
            f"select count(*), max(_dlt_load_id) from {schema}.{table} "
            f"where _dlt_load_id in (select load_id from {schema}._dlt_loads where status = 0)"
        ).fetchall()
        rows += count
        newest = max(filter(None, [newest, load_id]), default=None)
    return rows, newest


def latest_rows_loaded_at(connection: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    """When the newest dlt load that brought rows (new or changed) started, over every source.

    A load that brought nothing new does not count: dlt records those too.
    """
    times = [load_time(newest_rows(connection, source)[1]) for source in SOURCES]
    return max(filter(None, times), default=None)


@dataclass
class DaysToRun:
    """The earliest day a run's new loads can change (to build from) and the earliest day a row of
    them lands on (to test from); None when no load is new."""

    affected: dt.date | None
    loaded: dt.date | None


def first_days(
    connection: duckdb.DuckDBPyConnection, since: dt.datetime | None, manifest: dict | None = None
) -> DaysToRun:
    """The days of the loads finished after `since` (every load when None), from dbt's view
    planning_load_days: the earliest day their rows can change and the earliest they land on.

    `manifest`: dbt's manifest the build runs with (a run passes the one dagster-dbt loaded; default:
    the one in dbt's target folder). FIRST_DAY when the view, or a model it depends on (the relations
    it reads, the day-partitioned gold models), is not built yet: a first build, a model added since,
    a warehouse built before the view. A manifest without the view is an error: no run could then
    tell which days to build.
    """
    relations = planning_relations(manifest if manifest is not None else read_manifest())
    if not relations:
        raise RuntimeError(
            f"dbt's manifest has no model {PLANNING_MODEL} (models/monitoring/planning/): "
            "the run cannot tell which days its new loads change"
        )
    if not set(relations) <= relations_in(connection):
        return DaysToRun(FIRST_DAY, FIRST_DAY)
    planning = ".".join(relations[0])
    affected: list[dt.date] = []
    loaded: list[dt.date] = []
    for source, load_ids in completed_loads(connection, since).items():
        if not load_ids:
            continue
        # the ids as literals: DuckDB then applies the filter at the staging scans under the view's
        # joins, so only the new loads' rows are read (`in (select unnest(...))` is not pushed there)
        placeholders = ", ".join(["?"] * len(load_ids))
        [(first_affected, first_loaded)] = connection.execute(
            f"select min(affected_date), min(loaded_date) from {planning} "
            f"where source_name = ? and source_load_id in ({placeholders})",
            [source, *load_ids],
        ).fetchall()
        affected += filter(None, [first_affected])
        loaded += filter(None, [first_loaded])
    return DaysToRun(min(affected, default=None), min(loaded, default=None))


def planning_relations(manifest: dict) -> list[tuple[str, str]]:
    """(schema, name) of the planning view, first, and of every model it depends on, directly or
    not; [] when the manifest has no planning view."""
    nodes = manifest.get("nodes", {})
    relations: list[tuple[str, str]] = []
    seen: set[str] = set()
    pending = [f"model.ml_features.{PLANNING_MODEL}"]
    while pending:
        key = pending.pop(0)
        node = nodes.get(key)
        if key in seen or not node or node["resource_type"] != "model" or node["config"]["materialized"] == "ephemeral":
            continue
        seen.add(key)
        relations.append((node["schema"], node["alias"]))
        pending += node["depends_on"]["nodes"]
    return relations


@dataclass
class Freshness:
    """How long ago dlt last loaded rows of a source, against the source's dbt freshness thresholds."""

    source: str
    rows: int
    last_rows_loaded_at: dt.datetime | None
    last_load_at: dt.datetime | None
    lag_seconds: float | None
    warn_after: float | None
    error_after: float | None

    @property
    def state(self) -> str:
        if self.lag_seconds is None:
            return "never loaded"
        if self.error_after and self.lag_seconds > self.error_after:
            return "error"
        if self.warn_after and self.lag_seconds > self.warn_after:
            return "warn"
        return "ok"


def read_manifest(path: Path | None = None) -> dict:
    """dbt's manifest at `path` (default: in dbt's target folder), {} when there is none."""
    path = path or Path(target_path()) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def freshness_thresholds(manifest: dict) -> dict[str, tuple[float | None, float | None]]:
    """(warn_after, error_after) seconds per source from dbt's source freshness config."""

    def seconds(rule: dict | None) -> float | None:
        if not rule or not rule.get("count") or rule.get("period") not in PERIOD_SECONDS:
            return None
        return float(rule["count"] * PERIOD_SECONDS[rule["period"]])

    thresholds: dict[str, tuple[float | None, float | None]] = {}
    for node in manifest.get("sources", {}).values():
        rule = node.get("freshness") or (node.get("config") or {}).get("freshness") or {}
        if rule and node["source_name"] not in thresholds:
            thresholds[node["source_name"]] = (seconds(rule.get("warn_after")), seconds(rule.get("error_after")))
    return thresholds


def source_freshness(connection: duckdb.DuckDBPyConnection, now: dt.datetime) -> list[Freshness]:
    """Each source's row count and time since dlt last loaded rows (the same clock as `dbt source freshness`)."""
    thresholds = freshness_thresholds(read_manifest())
    result = []
    for source in SOURCES:
        rows, newest = newest_rows(connection, source)
        last_load = None
        if relation_exists(connection, f"raw_{source}", "_dlt_loads"):
            [(last_load,)] = connection.sql(
                f"select max(cast(inserted_at as timestamp)) from raw_{source}._dlt_loads where status = 0"
            ).fetchall()
        loaded_at = load_time(newest)
        lag = (now - loaded_at).total_seconds() if loaded_at else None
        warn, error = thresholds.get(source, (None, None))
        result.append(Freshness(source, rows, loaded_at, last_load, lag, warn, error))
    return result


def quarantine_counts(connection: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int, str]]:
    """Rejected rows by source table and rule, with one sample reason of each; [] when the quarantine
    was never built."""
    if not relation_exists(connection, "intermediate", "int_quarantined_rows"):
        return []
    return connection.sql(
        "select source_table, rejection_rule, count(*), min(rejection_reason) "
        "from intermediate.int_quarantined_rows group by all order by all"
    ).fetchall()
