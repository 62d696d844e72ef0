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
# the day-partitioned models and the validated transactions they are built from: when one is missing
# (a first build, a model added since) the run builds every day
BUILT_RELATIONS = (
    ("intermediate", "int_transactions_windowed"),
    ("intermediate", "int_transactions_validated"),
    ("marts_audit", "fct_transaction_windows"),
    ("marts_audit", "user_daily_features"),
)
# per source, the day each row of its new loads (`$loads`) lands on: the days a run's data tests
# check, so every row that arrived is tested, a status change included. For events and rates it is
# also the earliest day the row changes: a late event counts in the sessions before the transactions
# after it, a rate converts the amounts of its day and of the days after it (each day's windows look
# back 30 days, so every later day is rebuilt too)
LOADED_DAYS = {
    "app": "select cast(created_at as date) as day from staging.stg_app__transactions "
    "where source_load_id in (select unnest($loads))",
    "events": "select cast(occurred_at as date) as day from staging.stg_events__events "
    "where source_load_id in (select unnest($loads))",
    "fx": "select rate_date as day from staging.stg_fx__rates where source_load_id in (select unnest($loads))",
    # the real-time consumer's loads (realtime/consumer.py): pushed transactions and events
    "stream": "select cast(created_at as date) as day from staging.stg_stream__transactions "
    "where source_load_id in (select unnest($loads)) union all "
    "select cast(occurred_at as date) as day from staging.stg_stream__events "
    "where source_load_id in (select unnest($loads))",
}
# the dataset of the real-time consumer: not a source `pipeline run` extracts, but its loads are new rows
STREAM = "stream"
# the days whose day-partitioned rows (history windows, daily features) the app's new loads can
# change. A transaction new, or changed in what the features read (user, time, amount, currency,
# device): its day, and the day the windows hold it on. A change of status alone (most updates)
# changes no feature, so it does not rebuild weeks of windows. The version compared with is the
# validated one when the windows were built after it (else a failed build may have validated the
# change without building the windows). Transactions valid, or quarantined for an unknown user, that
# the windows do not hold, of a user in the new loads: valid now that their user is known (their
# events too, which only count for their user's transactions).
APP_AFFECTED_DAYS = """
        select least(cast(changed.created_at as date), windowed.transaction_date) as day
        from (
            with new_rows as materialized (
                select * from staging.stg_app__transactions where source_load_id in (select unnest($loads))
            )
            select * from new_rows
        ) as changed
        left join intermediate.int_transactions_validated as built
            on
                changed.transaction_id = built.transaction_id
                and built.source_load_id <= (
                    select max(source_load_id) from intermediate.int_transactions_windowed
                )
        left join intermediate.int_transactions_windowed as windowed
            on changed.transaction_id = windowed.transaction_id
        where
            (
                built.transaction_id is null
                or changed.user_id is distinct from built.user_id
                or changed.created_at is distinct from built.created_at
                or changed.amount is distinct from built.amount
                or changed.currency is distinct from built.currency
                or changed.device_type is distinct from built.device_type
            )
        union all
        select cast(validated.created_at as date) as day
        from (
            with users_loaded as materialized (
                select user_id from staging.stg_app__users where source_load_id in (select unnest($loads))
            )
            select validated.transaction_id, validated.created_at
            from intermediate.int_transactions_validated as validated
            where
                (validated.rejection_rule is null or validated.rejection_rule = 'unknown_user')
                and validated.user_id in (select user_id from users_loaded)
                and validated.transaction_id not in (
                    select windowed.transaction_id
                    from intermediate.int_transactions_windowed as windowed
                    where windowed.user_id in (select user_id from users_loaded)
                )
        ) as validated
"""
STREAM_AFFECTED_DAYS = APP_AFFECTED_DAYS.replace("staging.stg_app__transactions", "staging.stg_stream__transactions")
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
    for source in (*SOURCES, STREAM):
        if not relation_exists(connection, f"raw_{source}", "_dlt_loads"):
            continue
        rows = connection.execute(
            f"select load_id from raw_{source}._dlt_loads where status = 0 "
            "and (cast(? as timestamp) is null or cast(inserted_at as timestamp) > ?) order by load_id",
            [since, since],
        ).fetchall()
        loads[source] = [load_id for (load_id,) in rows]
    return loads


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


def first_days(connection: duckdb.DuckDBPyConnection, since: dt.datetime | None) -> DaysToRun:
    """The days of the loads finished after `since` (every load when None): LOADED_DAYS per source,
    APP_AFFECTED_DAYS for the app's features.

    FIRST_DAY when the day-partitioned models or the relations they are built from do not exist yet:
    a first build builds every day there is.
    """
    if not all(relation_exists(connection, schema, name) for schema, name in BUILT_RELATIONS):
        return DaysToRun(FIRST_DAY, FIRST_DAY)
    new_loads = completed_loads(connection, since)
    affected: list[dt.date] = []
    loaded: list[dt.date] = []
    for source, days_of_load in LOADED_DAYS.items():
        load_ids = new_loads.get(source) or []
        if not load_ids:
            continue
        if source == STREAM and not relation_exists(connection, "staging", "stg_stream__transactions"):
            return DaysToRun(FIRST_DAY, FIRST_DAY)  # loaded before dbt ever built the stream's staging
        days = first_day(connection, days_of_load, load_ids)
        loaded += days
        if source == "app":
            affected += first_day(connection, APP_AFFECTED_DAYS, load_ids)
        elif source == STREAM:  # a pushed transaction, or version, is judged like one of the app's
            affected += days + first_day(connection, STREAM_AFFECTED_DAYS, load_ids)
        else:
            affected += days
    return DaysToRun(min(affected, default=None), min(loaded, default=None))


def first_day(connection: duckdb.DuckDBPyConnection, days_of_load: str, load_ids: list[str]) -> list[dt.date]:
    """The earliest day `days_of_load` gives for `load_ids`, as a list (empty when there is none)."""
    [(day,)] = connection.execute(f"select min(day) from ({days_of_load})", {"loads": load_ids}).fetchall()
    return [day] if day else []


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


def read_manifest() -> dict:
    path = Path(target_path()) / "manifest.json"
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
