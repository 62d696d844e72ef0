"""A `dbt build` whose Dagster step stops reading its events (the step raised: a check Dagster
rejects, a manifest that no longer matches the project) is stopped with the step. Left running, it
held the warehouse's write lock, so every retry of the step failed as locked."""

import duckdb
from conftest import Warehouse

from orchestration.dbt_assets import stream_events
from orchestration.dbt_project import manifest_path
from orchestration.resources import dbt_resource


def test_dbt_stops_when_the_step_stops_reading_its_events(warehouse_copy: Warehouse) -> None:
    invocation = dbt_resource().cli(
        ["build", "--exclude-resource-type", "unit_test"], manifest=manifest_path(), raise_on_error=False
    )
    assert invocation.adapter is None  # not opened in this process (orchestration/resources.py)
    events = stream_events(invocation)
    next(events)  # dbt is building: its first node is done
    events.close()  # what a step that raises does to its event generator
    assert invocation.process.poll() is not None, "dbt still runs after its step stopped"
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:  # the retry can write
        assert connection.sql("select 1").fetchone() == (1,)
