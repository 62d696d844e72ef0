"""Ingest: one Dagster multi-asset per dlt source (extract/), producing the raw tables dbt's
sources read, under the same asset keys, so the graph runs on from them into the dbt models."""

from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetSpec, MaterializeResult, multi_asset

from extract.load import SOURCES, load_source
from orchestration.failures import retried_or_failed, with_retries
from orchestration.partitions import ONE_DAY_PER_RUN, daily
from orchestration.settings import destination
from pipeline.console import log


def source_tables(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """{dlt source: [its raw tables dbt reads]}, from dbt's sources."""
    tables: dict[str, list[str]] = {name: [] for name in SOURCES}
    for source in manifest["sources"].values():
        if source["source_name"] in tables:
            tables[source["source_name"]].append(source["name"])
    return tables


def extract_asset(source: str, tables: list[str]):  # noqa: ANN201 (an AssetsDefinition)
    specs = [
        AssetSpec(
            AssetKey([source, table]),
            group_name="ingest",
            kinds={"dlt"},
            description=f"raw_{source}.{table}, loaded by dlt (extract/, source {source})",
        )
        for table in sorted(tables)
    ]

    @multi_asset(name=f"extract_{source}", specs=specs, partitions_def=daily, backfill_policy=ONE_DAY_PER_RUN)
    @with_retries
    def extract(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
        log(f"[extract] {source} started")
        try:
            load = load_source(source, destination())
        except Exception as error:  # an ExtractError too: a locked warehouse is one, and transient
            raise retried_or_failed(error, f"extract {source}") from error
        log(f"[extract] {load.describe()}")
        for spec in specs:
            table = spec.key.path[-1]
            rows = len(load.load_ids) if table == "_dlt_loads" else load.rows.get(table, 0)
            yield MaterializeResult(
                asset_key=spec.key,
                metadata={"rows_loaded": rows, "load_ids": ", ".join(load.load_ids), "dataset": load.dataset},
            )

    return extract


def extract_assets(manifest: dict[str, Any]) -> list:
    return [extract_asset(source, tables) for source, tables in source_tables(manifest).items() if tables]
