"""The project's dbt resource skips two things dagster-dbt does before each dbt command
(orchestration/resources.py): they must still be dagster-dbt's to replace, and what replaces them
must say what they said."""

import subprocess

from dagster_dbt import DbtCliResource

from orchestration.resources import ProjectDbtCli, dbt_resource


def test_the_replaced_members_are_still_dagster_dbts_and_the_version_is_what_dbt_says() -> None:
    # an upgrade of dagster-dbt that renamed them would make the replacements dead code, silently
    assert isinstance(vars(DbtCliResource)["_cli_version"], type(vars(ProjectDbtCli)["_cli_version"]))
    assert callable(vars(DbtCliResource)["_initialize_dbt_core_adapter"])
    resource = dbt_resource()
    printed = subprocess.run([resource.dbt_executable, "--version"], capture_output=True, text=True, check=True)
    assert f"installed: {resource._cli_version}" in printed.stdout, printed.stdout
