"""The dbt CLI resource: this project, its own profiles.yml, the target from DBT_TARGET."""

import sys
from pathlib import Path

from dagster_dbt import DbtCliResource

from orchestration.settings import dbt_target
from pipeline.warehouse.dbt_runner import PROJECT_DIR


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(PROJECT_DIR),
        profiles_dir=str(PROJECT_DIR),
        target=dbt_target(),
        dbt_executable=str(Path(sys.executable).parent / "dbt"),
    )
