"""Export the training set as versioned, hive-partitioned Parquet with a manifest.

    data/exports/training_set/version=<hash12>/date=YYYY-MM-DD/data_0.parquet
    data/exports/training_set/version=<hash12>/manifest.json
    data/exports/training_set/latest.json          (a copy of the newest manifest)

The version is the content hash of the rows, so exporting the same data twice gives the same
version and leaves the files untouched; a model names the exact data it was trained on by it.
A version is written to a temporary folder and renamed into place, and latest.json is replaced
by a rename too, so readers never see half of either.

The pipeline exports from the published file (pipeline/warehouse/published.py), not from the warehouse, so
an export neither waits for nor holds up the pipeline's writers.
"""

import datetime as dt
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from extract.load import SOURCES, data_dir
from pipeline.warehouse.connections import connect, relation_exists

EXPORT_RELATION = "marts.training_set"
ORDER_BY = "transaction_date, transaction_id"


@dataclass
class Manifest:
    """What a training-set export holds and where it came from."""

    dataset: str
    version: str
    content_hash: str
    row_count: int
    split_counts: dict[str, int]
    columns: list[str]
    partitions: int
    dbt_invocation_id: str
    source_load_ids: dict[str, list[str]]
    git_commit: str
    exported_at: str
    path: str = ""
    reused: bool = field(default=False)


def exports_dir() -> Path:
    return data_dir() / "exports"


def git_commit() -> str:
    """The repository's HEAD commit, or 'unknown' outside a git checkout."""
    completed = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
    )
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


def content_hash(connection: duckdb.DuckDBPyConnection, relation: str) -> str:
    """sha256 of the row count and two sums of 64-bit hashes of every whole row (DuckDB's `hash`,
    unsalted and salted): equal data, equal hash, whatever the row order. Computed in parallel
    without turning rows into text (an md5 of each row's text was many times slower). The same
    data hashed by another DuckDB version may get another hash, and so a new export version."""
    [(digest,)] = connection.sql(
        "select sha256(concat_ws(':', count(*), coalesce(sum(hash(row_data)), 0), "
        f"coalesce(sum(hash(row_data, '{relation}')), 0))) from {relation} as row_data"
    ).fetchall()
    return str(digest)


def source_load_ids(connection: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The completed dlt loads of every raw dataset the training set is built from: as the published
    file recorded them when it was copied, or (reading the warehouse) every completed load."""
    if relation_exists(connection, "publication", "version"):
        [(recorded,)] = connection.sql("select source_load_ids from publication.version").fetchall()
        return json.loads(recorded)
    load_ids: dict[str, list[str]] = {}
    for source in SOURCES:
        rows = connection.sql(
            f"select load_id from raw_{source}._dlt_loads where status = 0 order by load_id"
        ).fetchall()
        load_ids[f"raw_{source}"] = [load_id for (load_id,) in rows]
    return load_ids


def export_training_set(duckdb_path: str, root: Path | None = None) -> Manifest:
    """Write the training set of the database at `duckdb_path` (the published file, or a warehouse)
    as a new version, or reuse an identical one. A locked database is waited for with retries."""
    root = (root or exports_dir()) / "training_set"
    root.mkdir(parents=True, exist_ok=True)
    with connect(duckdb_path, read_only=True) as connection:
        digest = content_hash(connection, EXPORT_RELATION)
        version = digest[:12]
        final_dir = root / f"version={version}"
        manifest_file = final_dir / "manifest.json"
        if manifest_file.exists():
            manifest = Manifest(**{**json.loads(manifest_file.read_text()), "reused": True})
        else:
            manifest = write_version(connection, root, final_dir, digest)
    temporary = root / f".latest.json.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    os.replace(temporary, root / "latest.json")
    return manifest


def write_version(connection: duckdb.DuckDBPyConnection, root: Path, final_dir: Path, digest: str) -> Manifest:
    """COPY the rows into a temporary folder partitioned by date, then rename it into place."""
    staging_dir = root / f".tmp-{final_dir.name}"
    shutil.rmtree(staging_dir, ignore_errors=True)
    connection.sql("set preserve_insertion_order = true")
    connection.sql(
        f"copy (select *, transaction_date as date from {EXPORT_RELATION} order by {ORDER_BY}) "
        f"to '{staging_dir}' (format parquet, partition_by (date), compression zstd)"
    )
    staging_dir.mkdir(exist_ok=True)  # an empty training set writes no partition but still gets a manifest
    columns = [name for (name, *_) in connection.sql(f"describe {EXPORT_RELATION}").fetchall()]
    split_counts = dict(
        connection.sql(f"select split, count(*) from {EXPORT_RELATION} group by split order by split").fetchall()
    )
    [(invocation_id,)] = connection.sql("select fitted_by_invocation_id from marts.preprocessing_parameters").fetchall()
    manifest = Manifest(
        dataset="training_set",
        version=final_dir.name.removeprefix("version="),
        content_hash=digest,
        row_count=sum(split_counts.values()),
        split_counts=split_counts,
        columns=columns,
        partitions=sum(1 for _ in staging_dir.glob("date=*")),
        dbt_invocation_id=invocation_id,
        source_load_ids=source_load_ids(connection),
        git_commit=git_commit(),
        exported_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        path=str(final_dir),
    )
    (staging_dir / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    staging_dir.rename(final_dir)
    return manifest
