"""A sensor that starts the daily job when new files land in a bucket source (the event stream's
micro-batches, the chargeback files): every 30 s it lists the buckets through dlt's filesystem
client (a folder, file://, s3://, gs://) and asks for a run of today when a file is new or changed.

The cursor is the newest modification time seen (the first look only records it: files already
there are not a delivery); the run key names the files, so one delivery starts one run. The
extract step then loads those files (dlt keeps its own record of what it read).
"""

import datetime as dt
import hashlib
import json

import dlt
from dagster import (
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dlt.common.storages.configuration import FilesystemConfiguration
from dlt.common.storages.fsspec_filesystem import fsspec_from_config, glob_files

from extract.errors import CONFIG_SECTIONS
from extract.load import DEMO_FILES, demo_dir, uses_demo

BUCKET_SOURCES = {"events": "**/*.parquet", "chargebacks": "**/*"}


def bucket_url(source: str) -> str | None:
    """Where a bucket source's files land (its demo folder when it reads the demo); None when unset."""
    if uses_demo(source):
        path = demo_dir() / DEMO_FILES[source]
        return str(path.resolve()) if path.exists() else None
    return dlt.config.get(f"sources.{CONFIG_SECTIONS[source]}.bucket_url")


def files_since(source: str, since: float) -> list[tuple[str, float]]:
    """(file url, modified at as a unix time) of the source's files modified after `since`."""
    url = bucket_url(source)
    if not url:
        return []
    credentials = dlt.secrets.get(f"sources.{CONFIG_SECTIONS[source]}.credentials")
    config = FilesystemConfiguration(bucket_url=url, credentials=credentials)
    client, _ = fsspec_from_config(config)
    found = []
    for item in glob_files(client, url, BUCKET_SOURCES[source]):
        modified = item["modification_date"].timestamp()
        if modified > since:
            found.append((item["file_url"], modified))
    return found


def bucket_files_sensor(job: JobDefinition | UnresolvedAssetJobDefinition):  # noqa: ANN201 (a SensorDefinition)
    @sensor(
        name="new_bucket_files",
        job=job,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Starts the daily job (today) when files land in the event-stream or chargebacks bucket.",
    )
    def new_bucket_files(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        new = {source: files_since(source, float(cursor.get(source, 0.0))) for source in BUCKET_SOURCES}
        for source, files in new.items():
            if files:
                cursor[source] = max(modified for _, modified in files)
        if not context.cursor:  # the first look: what is there already is not a delivery
            found = sum(len(files) for files in new.values())
            return SensorResult(
                skip_reason=f"watching {found} files; a run starts when a new one lands", cursor=json.dumps(cursor)
            )
        if not any(new.values()):
            return SkipReason("no new files in the bucket sources")
        names = sorted(url for files in new.values() for url, _ in files)
        counts = ", ".join(f"{source} {len(files)}" for source, files in new.items() if files)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        request = RunRequest(
            run_key=hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
            partition_key=today,
            tags={"ml_features/new_files": counts},
        )
        return SensorResult(run_requests=[request], cursor=json.dumps(cursor))

    return new_bucket_files
