"""The published gold as its own read-only DuckDB file, for readers that must never wait or fail.

    <data dir>/published/gold.duckdb     schema `marts`: one table per gold model (dbt's meta.publish),
                                         schema `publication`: table `version`, one row saying which
                                         dbt invocation published it, when, its row counts, the content
                                         hash of marts.training_set and the dlt loads it was built from

DuckDB lets one process write a database file, and a reader of the warehouse takes a lock that
the pipeline's writers (dlt, dbt, the run log) then cannot get, and the other way round (issue 21,
docs/reliability.md). Readers of the gold (a notebook, the export, the training job, a BI tool)
open this file instead, read-only. After every publish the pipeline copies the published gold from
the warehouse into a new file under a temporary name and renames it over this one (os.replace,
atomic on one filesystem): a reader that opens the file sees one whole version, the old or the
new, and a reader that holds it open keeps reading the old version (Linux keeps the old inode
until it is closed) without holding up the pipeline.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from extract.load import SOURCES, data_dir, duckdb_settings
from pipeline.monitoring import read_manifest
from pipeline.transient import LOCK_MESSAGE
from pipeline.warehouse import WarehouseLocked, locked_message

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


def gold_tables(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """The published gold models: dbt's meta.publish models (from its manifest), else every relation in `marts`."""
    nodes = read_manifest().get("nodes", {}).values()
    names = sorted(
        str(node.get("alias") or node["name"])
        for node in nodes
        if node.get("resource_type") == "model" and ((node.get("config") or {}).get("meta") or {}).get("publish")
    )
    present = warehouse_relations(connection, SCHEMA)
    return [name for name in names if name in present] or sorted(present)


def copy_gold(connection: duckdb.DuckDBPyConnection, invocation_id: str, published_at: object) -> Publication:
    """Copy the published gold of the attached `warehouse` into this connection's own database, in
    one transaction (one snapshot of the warehouse), with the row that says which version it is."""
    connection.execute("begin transaction")
    connection.execute(f"create schema {SCHEMA}; create schema publication")
    tables = {}
    for name in gold_tables(connection):
        connection.execute(f"create table {SCHEMA}.{name} as select * from warehouse.{SCHEMA}.{name}")
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
        "create table publication.version as select ? as invocation_id, cast(? as timestamp) as published_at, "
        "now()::timestamp as copied_at, ? as row_counts, ? as training_set_hash, ? as source_load_ids",
        [invocation_id, published_at, json.dumps(tables), digest, json.dumps(loads)],
    )
    connection.execute("commit")
    return Publication(invocation_id, published_at, tables)


def content_hash(connection: duckdb.DuckDBPyConnection, relation: str) -> str:
    from pipeline.export import content_hash as export_hash  # the export's version is this same hash

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
        with duckdb.connect(str(temporary), config=duckdb_settings()) as connection:
            connection.execute("set TimeZone = 'UTC'; set enable_progress_bar = false")
            attach_warehouse(connection, warehouse)
            latest = latest_publish(connection)
            if latest is None or (latest[0] == current and not force):
                return None
            publication = copy_gold(connection, *latest)
            connection.execute("detach warehouse; checkpoint")
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
