"""The manifest Dagster loads is parsed for the target the builds name, so each `dbt build` of a run
reuses that parse (dbt's partial parsing) instead of parsing the whole project again (a third of a
new day's fixed cost at 1M: dbt took 20 s to start)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from orchestration.dbt_project import manifest_path
from orchestration.resources import dbt_resource


def test_a_build_reuses_the_parse_of_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    monkeypatch.setenv("ML_FEATURES_DATA_DIR", str(tmp_path / "data"))
    assert manifest_path().exists()  # parsed: there was none
    # the arguments a build gets from the Dagster resource, the command `dbt parse` (it loads the
    # manifest as `dbt build` does, without needing a warehouse)
    target = dbt_resource().target
    dbt = Path(sys.executable).parent / "dbt"
    command = [str(dbt), "parse", "--target", str(target), "--log-format-file", "json"]
    command += ["--log-level-file", "debug", "--log-path", str(tmp_path / "logs")]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    messages = [json.loads(line)["info"]["msg"] for line in (tmp_path / "logs" / "dbt.log").read_text().splitlines()]
    parsing = [message for message in messages if "partial pars" in message]
    print(parsing)
    assert parsing == ["Nothing changed, skipping partial parsing."]


READ_MANIFEST = (
    "import json; from orchestration.dbt_project import manifest_path; json.loads(manifest_path().read_text())"
)


def test_processes_that_start_together_read_one_whole_manifest(tmp_path: Path) -> None:
    """The webserver, the daemon and the code server (or pytest's workers) start at once on a new
    checkout: each finds no manifest. Parsed by all of them at once, dbt's writes interleaved into
    one corrupt manifest.json (CI: 'JSONDecodeError ... line 1 column 43410') that every later
    start found current."""
    environment = {**os.environ, "DBT_TARGET_PATH": str(tmp_path / "target")}
    starts = [
        subprocess.Popen([sys.executable, "-c", READ_MANIFEST], cwd=REPO_ROOT, env=environment, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [start.communicate(timeout=300)[1].decode()[-2000:] for start in starts]
    assert [start.returncode for start in starts] == [0] * 4, errors
    json.loads((tmp_path / "target" / "manifest.json").read_text())
