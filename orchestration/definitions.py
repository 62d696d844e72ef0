"""The whole pipeline as one Dagster asset graph: `dagster dev -m orchestration.definitions`
(or `make dagster`) shows it; `pipeline run` materializes its daily job in process.

    ingest (dlt) -> validate -> transform -> features (dbt) -> store (export) -> train

One job, `daily`, materializes every asset for a day (a partition), in one process, one step after
another: DuckDB has one writer, so two runs never run at once either (dagster.yaml:
max_concurrent_runs 1). A schedule runs it at 02:00 UTC for the day before; a sensor runs it when
new files land in the chargebacks bucket. Alerts: row-drop asset checks on the raw and gold tables,
and slow steps and the error rate after each run (orchestration/monitoring.py).
"""

import json

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from orchestration.dbt_assets import dbt_models
from orchestration.dbt_project import manifest_path
from orchestration.extract_assets import extract_assets
from orchestration.ml_assets import fraud_model, training_set_export
from orchestration.monitoring import SENSORS, monitoring_checks
from orchestration.partitions import daily
from orchestration.resources import dbt_resource
from orchestration.schedules import daily_schedule
from orchestration.sensors import bucket_files_sensor

MANIFEST = json.loads(manifest_path().read_text())
ASSETS = [*extract_assets(MANIFEST), dbt_models, training_set_export, fraud_model]
CHECKS = monitoring_checks(MANIFEST, dbt_models)  # row drops on the raw and gold tables

daily_job = define_asset_job(
    "daily",
    selection=AssetSelection.all(),
    partitions_def=daily,
    executor_def=in_process_executor,
    description="Every asset for one day, sources to model, in one process (the warehouse has one writer).",
)

defs = Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[daily_job],
    schedules=[daily_schedule(daily_job)],
    sensors=[bucket_files_sensor(daily_job), *SENSORS],
    resources={"dbt": dbt_resource()},
)
