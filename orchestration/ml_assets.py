"""Store and train: the versioned training-set export, read from the published gold, and the
model trained on it. Both need the local published file, so on BigQuery they do nothing."""

from collections.abc import Iterator

from dagster import AssetExecutionContext, AssetKey, AssetObservation, MaterializeResult, asset
from dagster_dbt import get_asset_key_for_model

from extract.load import duckdb_path
from orchestration.dbt_assets import dbt_models
from orchestration.failures import fail_fast, retried_or_failed, with_retries
from orchestration.partitions import ONE_DAY_PER_RUN, daily
from orchestration.settings import on_duckdb
from pipeline.console import log
from pipeline.training.export import export_training_set
from pipeline.warehouse.published import published_path, refresh_published

EXPORT = AssetKey("training_set_export")
MODEL = AssetKey("fraud_model")


@asset(
    key=EXPORT,
    deps=[get_asset_key_for_model([dbt_models], "training_set")],
    partitions_def=daily,
    backfill_policy=ONE_DAY_PER_RUN,
    group_name="store",
    kinds={"parquet"},
    output_required=False,
    description="data/exports/training_set/version=<content hash>/date=YYYY-MM-DD/*.parquet + manifest.json",
)
@with_retries
def training_set_export(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
    log("[export] started")
    if not on_duckdb():
        log("[export] skipped: the export reads the local published file (target bigquery)")
        return
    try:
        refresh_published(duckdb_path())
        if not published_path().exists():
            raise fail_fast("nothing has been published yet: a dbt build whose tests pass publishes the gold")
        manifest = export_training_set(str(published_path()))
    except OSError as error:
        raise fail_fast(f"export failed: cannot write {error.filename or ''}: {error.strerror or error}") from error
    except Exception as error:
        raise retried_or_failed(error, "export") from error
    log(
        f"[export] training_set version {manifest.version}: {manifest.row_count:,} rows, "
        f"{manifest.partitions} date partitions{' (unchanged, reused)' if manifest.reused else ''}"
    )
    yield MaterializeResult(
        metadata={
            "version": manifest.version,
            "dagster/row_count": manifest.row_count,
            "content_hash": manifest.content_hash,
            "reused": manifest.reused,
            "path": manifest.path,
        }
    )


def skipped(reason: str) -> AssetObservation:
    """Nothing to train on: said, and recorded as an observation (the run summary reads it), not a failure."""
    log(f"[train] skipped: {reason}")
    return AssetObservation(asset_key=MODEL, metadata={"skipped": reason})


@asset(
    key=MODEL,
    deps=[EXPORT],
    partitions_def=daily,
    backfill_policy=ONE_DAY_PER_RUN,
    group_name="train",
    kinds={"scikitlearn"},
    output_required=False,
    description="data/models/training_set-<version>/model.joblib + metrics.json, trained on the latest export",
)
@with_retries
def fraud_model(context: AssetExecutionContext) -> Iterator[MaterializeResult | AssetObservation]:
    log("[train] started")
    if not on_duckdb():
        log("[train] skipped: training reads the local export (target bigquery)")
        return
    from pipeline.training.train import (  # scikit-learn loads only when a run trains
        NothingToLearn,
        TrainingError,
        skip_reason,
        train,
        training_line,
    )

    try:
        training = train()
    except NothingToLearn as error:
        yield skipped(skip_reason(error))
        return
    except TrainingError as error:
        if "needs rows of both classes" in str(error):
            yield skipped(f"{error}: not enough matured labels of both classes yet")
            return
        raise fail_fast(f"train failed: {error}") from error
    log(training_line(training))
    yield MaterializeResult(
        metadata={
            "roc_auc": training.roc_auc,
            "pr_auc": training.pr_auc,
            "train_rows": training.train_rows,
            "validation_rows": training.validation_rows,
            "model_path": training.model_path,
            "training_set_version": training.version,
        }
    )
