"""The dbt project as Dagster sees it: its manifest (parsed when a model, macro or setting is newer)
and the lesson's stages as asset groups.

    ingest     the raw tables dlt loads (extract/)
    validate   staging (typed, only completed loads) and the data-quality models
    transform  the intermediate models, seeds and snapshots
    features   the marts (gold)
    store      the versioned training-set export;  train  the model
"""

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from pipeline.dbt_runner import PROJECT_DIR, target_path

PARSED_FROM = ("models", "macros", "seeds", "snapshots", "tests", "dbt_project.yml", "profiles.yml")
GROUPS = {"staging": "validate", "monitoring": "validate", "intermediate": "transform", "marts": "features"}


def newest_change() -> float:
    """The newest modification time among the files dbt parses."""
    newest = 0.0
    for name in PARSED_FROM:
        path = PROJECT_DIR / name
        files = [path] if path.is_file() else path.rglob("*")
        newest = max([newest, *(file.stat().st_mtime for file in files if file.is_file())])
    return newest


def manifest_path() -> Path:
    """dbt's manifest.json, `dbt parse`d first when it is missing or older than the project's files."""
    manifest = target_path() / "manifest.json"
    if not manifest.exists() or manifest.stat().st_mtime < newest_change():
        dbt = str(Path(sys.executable).parent / "dbt")
        command = [dbt, "parse", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR), "--quiet"]
        environment = {**os.environ, "DBT_TARGET_PATH": str(target_path())}
        parsed = subprocess.run(command, cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, check=False)
        if parsed.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{parsed.stdout[-3000:]}{parsed.stderr[-2000:]}")
    return manifest


class Translator(DagsterDbtTranslator):
    """dbt's nodes under the lesson's stage names; dbt tests become asset checks."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "ingest"
        folder = Path(dbt_resource_props["original_file_path"]).parts[1]
        return GROUPS.get(folder, "transform")
