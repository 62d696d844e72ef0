"""The dbt CLI resource: this project, its own profiles.yml, the target from DBT_TARGET."""

import sys
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource
from packaging.version import Version

from orchestration.settings import dbt_target
from pipeline.warehouse.dbt_runner import PROJECT_DIR


class ProjectDbtCli(DbtCliResource):
    """dagster-dbt's resource without the two things it does before each dbt command that this
    project does not use, about 10 s of a run's first dbt command (measured on a demo day: 6.5 s and
    3.3 s of the 86 s):

    - asking `dbt --version` in a subprocess, which starts dbt and asks PyPI for the latest release
      (a network call at every run): the dbt it runs is this environment's, so its version is the
      installed dbt-core's;
    - opening a dbt adapter in the Dagster process, which dagster-dbt uses only to fetch row counts
      and column metadata (`fetch_row_counts()`, `fetch_column_metadata()`; not used here: the gold
      tables are counted by the gold_row_counts check, orchestration/monitoring.py).

    Both are private to dagster-dbt 0.29 (pinned); tests/python/test_dbt_resource.py
    checks that they are still there to be replaced."""

    @cached_property
    def _cli_version(self) -> Version:
        return Version(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Any) -> Any:
        return None


def dbt_resource() -> DbtCliResource:
    return ProjectDbtCli(
        project_dir=str(PROJECT_DIR),
        profiles_dir=str(PROJECT_DIR),
        target=dbt_target(),
        dbt_executable=str(Path(sys.executable).parent / "dbt"),
    )
