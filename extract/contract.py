"""Sources a user does not have: `enabled = false` loads the raw contract's tables empty.

Every feature needs the app database; the other sources are optional. A user without a
clickstream, chargeback files or an FX API sets `enabled = false` in that source's section of
`.dlt/config.toml` (or `SOURCES__<SECTION>__ENABLED=false`). The source is then not read: its
pipeline loads the contract's tables with no rows, so `raw_<source>` has the shape dbt's staging
models read, and the build runs with the features that depend on it at 0 or null (README: the raw
contract). Every contract column is text: staging casts raw values safely whatever their type.

Turned on again later, the source's first real load drops those empty tables and the pipeline's
state first (forget_disabled_load), so the real data's column types are taken as they come.
"""

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from extract.errors import CONFIG_SECTIONS, setting
from extract.files import REJECTED_FILES_HINTS, REJECTED_FILES_TABLE, SourceSettingError

# the tables each source loads and their columns: the raw contract (the app database's are in
# extract/app_database.py, and it cannot be turned off)
OPTIONAL_TABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "events": {
        "events": ("event_id", "user_id", "session_id", "event_type", "device_type", "occurred_at", "properties"),
    },
    "fx": {"rates": ("date", "currency", "rate_to_usd")},
    "chargebacks": {"chargebacks": ("transaction_id", "reported_at", "reason")},
}
# the columns our own sources add to the rows they load, which staging reads too
LINEAGE_COLUMNS: dict[str, tuple[str, ...]] = {"events": ("_batch_file",), "chargebacks": ("_source_file",)}
ROW_NUMBER_COLUMNS: dict[str, tuple[str, ...]] = {"chargebacks": ("_source_row",)}
# sources whose files can be rejected: staging reads their rejected_files table too
FILE_SOURCES = ("events", "chargebacks")
PLACEHOLDER_STATE_KEY = "loaded_empty_while_disabled"
REJECTED_FILES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("reason", pa.string()),
        ("size", pa.int64()),
        ("modification_date", pa.timestamp("us", tz="UTC")),
        ("is_readable", pa.bool_()),
        ("_dlt_id", pa.string()),
    ]
)


def is_enabled(name: str) -> bool:
    """`sources.<section>.enabled` (default true); the app database cannot be turned off."""
    value = dlt.config.get(f"sources.{CONFIG_SECTIONS[name]}.enabled")
    enabled = value is None or str(value).strip().lower() in ("true", "1", "yes")
    if not enabled and name not in OPTIONAL_TABLES:
        raise SourceSettingError(
            setting(name, "enabled"), "= false: the app database is the one source every feature needs"
        )
    return enabled


def empty_table(source: str, table: str) -> pa.Table:
    """A table of the contract's columns (all text) with no rows."""
    fields = [pa.field(column, pa.string()) for column in OPTIONAL_TABLES[source][table]]
    fields += [pa.field(column, pa.string()) for column in LINEAGE_COLUMNS.get(source, ())]
    fields += [pa.field(column, pa.int64()) for column in ROW_NUMBER_COLUMNS.get(source, ())]
    fields.append(pa.field("_dlt_id", pa.string()))
    return pa.schema(fields).empty_table()


def empty_resource(source: str, table: str) -> DltResource:
    """The contract's table `table` of `source`, loaded with no rows; the source's state says so."""

    def rows() -> pa.Table:
        dlt.current.source_state()[PLACEHOLDER_STATE_KEY] = True
        yield empty_table(source, table)

    return dlt.resource(rows, name=table, write_disposition="append")


def empty_rejected_files() -> DltResource:
    """The source's `rejected_files` table, with no rows."""

    def rows() -> pa.Table:
        yield dlt.mark.with_hints(REJECTED_FILES_SCHEMA.empty_table(), REJECTED_FILES_HINTS)

    return dlt.resource(rows, name=REJECTED_FILES_TABLE)


def disabled_source(name: str) -> dlt.sources.DltSource:
    """The source `name` turned off: its contract tables, empty."""
    resources = [empty_resource(name, table) for table in OPTIONAL_TABLES[name]]
    if name in FILE_SOURCES:
        resources.append(empty_rejected_files())

    @dlt.source(name=name)
    def contract_tables() -> list[DltResource]:
        return resources

    return contract_tables()


def forget_disabled_load(pipeline: dlt.Pipeline, name: str) -> None:
    """When the raw dataset of `name` holds the empty tables a disabled source loaded, drop it
    (and its merge staging dataset) and the pipeline's local state, so the real load starts afresh."""
    if not pipeline.state.get("sources", {}).get(name, {}).get(PLACEHOLDER_STATE_KEY):
        return
    with pipeline.sql_client() as client:
        for dataset in (pipeline.dataset_name, f"{pipeline.dataset_name}_staging"):
            client.execute_sql(f"drop schema if exists {client.capabilities.escape_identifier(dataset)} cascade")
    pipeline.drop()
