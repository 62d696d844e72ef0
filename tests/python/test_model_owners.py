"""Every model has an owner: `meta.owner`, set per folder in dbt_project.yml, is in the manifest that
dbt docs shows (read after a `dbt parse`, which needs no warehouse)."""

import json
from pathlib import Path

import pytest

from pipeline.warehouse.dbt_runner import run_dbt


def test_every_model_has_an_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    parse = run_dbt(["parse"], quiet=True)
    assert parse.returncode == 0, parse.output_tail
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    assert len(models) > 20
    without_owner = [model["name"] for model in models if not str(model["config"]["meta"].get("owner") or "").strip()]
    assert without_owner == []
    # what the docs site shows for the model is the same owner
    assert all(model["meta"].get("owner") == model["config"]["meta"]["owner"] for model in models)
