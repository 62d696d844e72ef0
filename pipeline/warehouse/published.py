"""The published gold as its own read-only DuckDB file, for readers that must never wait or fail.

    <data dir>/published/gold.duckdb     schema `marts`: each gold model (dbt's meta.publish): a table, or
                                         for a gold view a view over the file's tables,
                                         schema `publication`: table `version`, one row saying which
                                         dbt invocation published it, when, its row counts, the content
                                         hash of marts.training_set, the dlt loads it was built from and
                                         the tables that got only the new days (copied_by_days)

DuckDB lets one process write a database file, and a reader of the warehouse takes a lock that
the pipeline's writers (dlt, dbt, the run log) then cannot get, and the other way round (issue 21,
docs/reliability.md). Readers of the gold (a notebook, the export, the training job, a BI tool)
open this file instead, read-only. After every publish the pipeline writes the new version into a
new file under a temporary name and renames it over this one (os.replace, atomic on one
filesystem): a reader that opens the file sees one whole version, the old or the new, and a reader
that holds it open keeps reading the old version (Linux keeps the old inode until it is closed)
without holding up the pipeline.

The new file is the old one updated as dbt updated `marts` (macros/publish.sql), when the old one
holds the publish just before: the days an incremental gold table got (monitoring.publish_log's
published_days), the tables dbt replaced whole copied whole, the gold views created again over
the file's own tables. Otherwise (the first publish, a full refresh, a publish the file missed)
every table is copied whole. A new day so costs a file copy and its own rows, not the whole gold.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from extract.load import SOURCES, data_dir, duckdb_settings
from pipeline.transient import LOCK_MESSAGE
from pipeline.warehouse.connections import WarehouseLocked, locked_message
from pipeline.warehouse.monitoring import read_manifest

SCHEMA = "marts"
HASHED = "training_set"


def published_path() -> Path:
    """`ML_FEATURES_PUBLISHED_PATH`, default `<data dir>/published/gold.duckdb`."""
    return Path(os.environ.get("ML_FEATURES_PUBLISHED_PATH", data_dir() / "published" / "gold.duckdb"))


@dataclass
class Publication:
    invocation_id: str
    published_at: object
    tables: dict[str, int]
    by_days: list[str]  # the tables that got only the days dbt published; the others were copied whole
    seconds: float = 0.0


def warehouse_relations(connection: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    """Tables and views of `schema` in the attached warehouse."""
    rows = connection.execute(
        "select table_name from information_schema.tables where table_catalog = 'warehouse' and table_schema = ?",
        [schema],
    ).fetchall()
    return {name for (name,) in rows}


def latest_publish(connection: duckdb.DuckDBPyConnection) -> tuple[str, object] | None:
    """(invocation id, time) of the gold `marts` holds, None before the first publish.

    The invocation is the one that built it, as marts.preprocessing_parameters says (the publish
    swaps that table with the other gold tables in one transaction): what `marts` holds, even when
    dbt was killed between the publish and its monitoring.publish_log row. The time is the one
    publish_log gives that invocation, else when it was built. Without that table: publish_log's last publish.
    """
    logged: dict[str, object] = {}
    if "publish_log" in warehouse_relations(connection, "monitoring"):
        rows = connection.sql(
            "select invocation_id, max(logged_at) from warehouse.monitoring.publish_log where status = 'published' "
            "group by all order by 2"
        ).fetchall()
        logged = dict(rows)
    built = marts_invocation(connection, "warehouse.")
    if built:
        return built[0], logged.get(built[0], built[1])
    return list(logged.items())[-1] if logged else None


def marts_invocation(connection: duckdb.DuckDBPyConnection, catalog: str = "") -> tuple[str, object] | None:
    """(dbt invocation, build time) of the gold `marts` holds, from marts.preprocessing_parameters."""
    try:
        rows = connection.sql(
            f"select fitted_by_invocation_id, fitted_at from {catalog}{SCHEMA}.preprocessing_parameters"
        ).fetchall()
    except duckdb.Error:  # not built yet, or a project without it
        return None
    return (str(rows[0][0]), rows[0][1]) if rows and rows[0][0] else None


def published_invocation(path: Path | None = None) -> str | None:
    """The dbt invocation whose gold the published file holds, None when there is no (readable) file."""
    path = path or published_path()
    if not path.exists():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            [(invocation_id,)] = connection.sql("select invocation_id from publication.version").fetchall()
    except (duckdb.Error, ValueError):
        return None
    return str(invocation_id)


@dataclass
class GoldModel:
    name: str
    is_view: bool  # a gold view (meta.published_view): created again over the file's tables, not copied
    depends_on: list[str]  # the gold models it reads


def gold_models(connection: duckdb.DuckDBPyConnection) -> list[GoldModel]:
    """The published gold models: dbt's meta.publish models (from its manifest), else every relation in
    `marts` as a table; the views after the models they read."""
    nodes = [
        node
        for node in read_manifest().get("nodes", {}).values()
        if node.get("resource_type") == "model" and ((node.get("config") or {}).get("meta") or {}).get("publish")
    ]
    present = warehouse_relations(connection, SCHEMA)
    names = {node["unique_id"]: str(node.get("alias") or node["name"]) for node in nodes}
    models = [
        GoldModel(
            names[node["unique_id"]],
            node["config"]["materialized"] == "view",
            [names[parent] for parent in node.get("depends_on", {}).get("nodes", []) if parent in names],
        )
        for node in sorted(nodes, key=lambda node: names[node["unique_id"]])
        if names[node["unique_id"]] in present
    ]
    if not models:
        return [GoldModel(name, False, []) for name in sorted(present)]
    ordered: list[GoldModel] = [model for model in models if not model.is_view]
    views = [model for model in models if model.is_view]
    while views:
        ready = [view for view in views if all(parent in {m.name for m in ordered} for parent in view.depends_on)]
        if not ready:  # a view reading a gold model that is missing: copied as a table like the rest
            ready = views[:1]
            ready[0].is_view = False
        ordered += ready
        views = [view for view in views if view not in ready]
    return ordered


def published_days(connection: duckdb.DuckDBPyConnection, invocation_id: str, current: str | None) -> dict | None:
    """{model: predicate of the days dbt published} of publish `invocation_id` when the file holds the
    publish just before it (`current`), else None: the file then gets every table whole."""
    if current is None or "publish_log" not in warehouse_relations(connection, "monitoring"):
        return None
    columns = connection.execute(
        "select column_name from information_schema.columns where table_catalog = 'warehouse' "
        "and table_schema = 'monitoring' and table_name = 'publish_log'"
    ).fetchall()
    if ("published_days",) not in columns:
        return None
    rows = connection.sql(
        "select invocation_id, published_days from warehouse.monitoring.publish_log "
        "where status = 'published' order by logged_at"
    ).fetchall()
    invocations = [invocation for invocation, _ in rows]
    if invocation_id not in invocations or invocations.index(invocation_id) == 0:
        return None
    position = invocations.index(invocation_id)
    if invocations[position - 1] != current or rows[position][1] is None:
        return None
    return json.loads(rows[position][1])


def same_columns(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the file's table `name` has the columns (names and types, in order) of the warehouse's."""
    query = (
        "select column_name, data_type from information_schema.columns where table_catalog = ? "
        "and table_schema = ? and table_name = ? order by ordinal_position"
    )
    [(database,)] = connection.sql("select current_database()").fetchall()
    mine = connection.execute(query, [database, SCHEMA, name]).fetchall()
    return bool(mine) and mine == connection.execute(query, ["warehouse", SCHEMA, name]).fetchall()


def file_relations(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """{name: 'view' or 'table'} of this connection's own database's `marts` (one catalog query: each
    costs about 0.1 s with the warehouse attached)."""
    rows = connection.execute(
        "select table_name, table_type from information_schema.tables where table_catalog = current_database() "
        "and table_schema = ?",
        [SCHEMA],
    ).fetchall()
    return {name: "view" if kind == "VIEW" else "table" for name, kind in rows}


def view_sql(connection: duckdb.DuckDBPyConnection, name: str) -> str:
    """The `create view` statement of the warehouse's gold view `name`: it names `marts.<table>` without
    the warehouse's catalog (macros/publish.sql), so in this file it reads the file's tables."""
    [(sql,)] = connection.execute(
        "select sql from duckdb_views() where database_name = 'warehouse' and schema_name = ? and view_name = ?",
        [SCHEMA, name],
    ).fetchall()
    return str(sql)


def copy_gold(
    connection: duckdb.DuckDBPyConnection, invocation_id: str, published_at: object, days: dict | None
) -> Publication:
    """Write the published gold of the attached `warehouse` into this connection's own database, in
    one transaction (one snapshot of the warehouse), with the row that says which version it is.
    With `days` (the database is a copy of the previous version) the incremental tables get only
    those days; else the database is empty and gets every table whole."""
    connection.execute("begin transaction")
    if days is None:
        connection.execute(f"create schema {SCHEMA}; create schema publication")
    tables, by_days = {}, []
    existing = file_relations(connection)  # the previous version's, or none
    for model in gold_models(connection):
        name, source = model.name, f"warehouse.{SCHEMA}.{model.name}"
        if days is not None and name in days and existing.get(name) == "table" and same_columns(connection, name):
            connection.execute(f"delete from {SCHEMA}.{name} where {days[name]}")
            connection.execute(f"insert into {SCHEMA}.{name} select * from {source} where {days[name]}")
            by_days.append(name)
        else:
            if name in existing:
                connection.execute(f"drop {existing[name]} {SCHEMA}.{name}")
            if model.is_view:
                connection.execute(view_sql(connection, name))
            else:
                connection.execute(f"create table {SCHEMA}.{name} as select * from {source}")
        [(rows,)] = connection.sql(f"select count(*) from {SCHEMA}.{name}").fetchall()
        tables[name] = int(rows)
    loads = {}
    for source in SOURCES:
        if "_dlt_loads" in warehouse_relations(connection, f"raw_{source}"):
            rows = connection.execute(
                f"select load_id from warehouse.raw_{source}._dlt_loads where status = 0 "
                "and cast(inserted_at as timestamp) <= ? order by load_id",
                [published_at],
            ).fetchall()
            loads[f"raw_{source}"] = [load_id for (load_id,) in rows]
    digest = content_hash(connection, f"{SCHEMA}.{HASHED}") if HASHED in tables else None
    connection.execute(
        "create or replace table publication.version as select ? as invocation_id, "
        "cast(? as timestamp) as published_at, now()::timestamp as copied_at, ? as row_counts, "
        "? as training_set_hash, ? as source_load_ids, ? as copied_by_days",
        [invocation_id, published_at, json.dumps(tables), digest, json.dumps(loads), json.dumps(by_days)],
    )
    connection.execute("commit")
    return Publication(invocation_id, published_at, tables, by_days)


def content_hash(connection: duckdb.DuckDBPyConnection, relation: str) -> str:
    from pipeline.training.export import content_hash as export_hash  # the export's version is this same hash

    return export_hash(connection, relation)


def attach_warehouse(connection: duckdb.DuckDBPyConnection, warehouse: str) -> None:
    try:
        connection.execute(f"attach '{warehouse}' as warehouse (read_only)")
    except duckdb.IOException as error:
        if LOCK_MESSAGE not in str(error):
            raise
        raise WarehouseLocked(locked_message(error)) from error


def refresh_published(warehouse: str, force: bool = False) -> Publication | None:
    """Copy the warehouse's last published gold into the published file when that holds another
    version (or none); None when it is already current or nothing was ever published.

    OSError when the published folder cannot be written, WarehouseLocked when the warehouse stays locked.
    """
    path = published_path()
    current = published_invocation(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    wal = temporary.with_name(temporary.name + ".wal")
    started = time.perf_counter()
    try:
        # one connection, the warehouse attached throughout (read-only: no build publishes meanwhile), so
        # the version and days decided are the ones copied; the new file attached beside it
        with duckdb.connect(config=duckdb_settings()) as connection:
            connection.execute("set TimeZone = 'UTC'; set enable_progress_bar = false")
            attach_warehouse(connection, warehouse)
            latest = latest_publish(connection)
            if latest is None or (latest[0] == current and not force):
                return None
            days = None if force else published_days(connection, latest[0], current)
            if days is not None:
                shutil.copyfile(path, temporary)
            connection.execute(f"attach '{temporary}' as published; use published")
            publication = copy_gold(connection, *latest, days)
            connection.execute("use memory; checkpoint published; detach published; detach warehouse")
        durable_replace(temporary, path)
        publication.seconds = time.perf_counter() - started
        return publication
    finally:
        for leftover in (temporary, wal):
            leftover.unlink(missing_ok=True)


def remove_leftovers(path: Path) -> None:
    """Temporary copies a killed process left behind (its pid is in the name and no longer runs)."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp*"):
        pid = leftover.name.removeprefix(f".{path.name}.").split(".")[0]
        if pid.isdigit() and not process_exists(int(pid)):
            leftover.unlink(missing_ok=True)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def durable_replace(temporary: Path, path: Path) -> None:
    """Rename `temporary` over `path` after both are on disk, so a crash leaves the old file or the new one."""
    with open(temporary, "rb+") as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
