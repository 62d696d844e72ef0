"""The dbt project as Dagster sees it: its manifest (parsed when a model, macro or setting is newer)
and the lesson's stages as asset groups.

    ingest     the raw tables dlt loads (extract/)
    validate   staging (typed, only completed loads) and the data-quality models
    transform  the intermediate models, seeds and snapshots
    features   the marts (gold)
    store      the versioned training-set export;  train  the model
"""

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from orchestration.settings import dbt_target
from pipeline.warehouse.dbt_runner import PROJECT_DIR, target_path

PARSED_FROM = (
    *("models", "macros", "seeds", "snapshots", "tests/singular"),
    *("dbt_project.yml", "profiles.yml", "selectors.yml"),
)
PARTIAL_PARSE = "partial_parse.msgpack"
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
    """dbt's manifest.json, `dbt parse`d first when it is missing or older than the project's files.

    Processes that start together (the webserver, the daemon and the code server; pytest's workers)
    parse one at a time: each takes the target folder's lock, and one finding the manifest current
    reads it. dbt writes the manifest in place, so two parses at once interleaved their writes into
    one corrupt file that looked current to every later start; and a parse killed mid-write left a
    truncated one. So dbt parses into a folder of its own, and its manifest replaces the old one whole.
    """
    target = target_path()
    target.mkdir(parents=True, exist_ok=True)
    manifest = target / "manifest.json"
    with (target / "manifest.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest.exists() or manifest.stat().st_mtime < newest_change():
            parse_into(target)
    return manifest


def parse_into(target: Path) -> None:
    """`dbt parse` for the target the builds name (orchestration/resources.py): dbt reuses this parse
    (partial parsing) only for a build with the same --target; without it every build parsed the
    whole project again. Its partial_parse.msgpack, which dagster-dbt copies into each build's
    folder, is moved into `target` first, then the manifest."""
    dbt = str(Path(sys.executable).parent / "dbt")
    command = [dbt, "parse", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR), "--quiet"]
    command += ["--target", dbt_target()]
    with tempfile.TemporaryDirectory(prefix="parse-", dir=target) as folder:
        parsed = Path(folder)
        if (target / PARTIAL_PARSE).exists():
            shutil.copy(target / PARTIAL_PARSE, parsed / PARTIAL_PARSE)
        environment = {**os.environ, "DBT_TARGET_PATH": str(parsed)}
        result = subprocess.run(command, cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
        for name in (PARTIAL_PARSE, "manifest.json"):
            os.replace(parsed / name, target / name)


class Translator(DagsterDbtTranslator):
    """dbt's nodes under the lesson's stage names; dbt tests become asset checks."""

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "ingest"
        folder = Path(dbt_resource_props["original_file_path"]).parts[1]
        return GROUPS.get(folder, "transform")
