"""Run dbt as a subprocess with the project's own profiles.yml and summarise what it did (the
tests and benchmarks run dbt this way; the pipeline runs it through dagster-dbt).

A subprocess, not dbt's in-process runner: dbt-duckdb keeps its DuckDB connection open for the
life of the process, which would lock the warehouse file against the steps that follow.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.console import plain

PROJECT_DIR = Path(__file__).resolve().parents[2]
# settings of one run, passed as environment variables ML_FEATURES_<NAME> (macros/run_settings.sql:
# run_setting), not --vars: dbt parses the whole project again whenever --vars change;
# the macro reads them only when SQL is compiled, so a new value needs no parsing
RUN_SETTINGS = ("run_date", "from_date", "to_date", "tested_from_date")


@dataclass
class DbtSummary:
    """Counts from one dbt invocation: nodes by type and status, and the failures by name."""

    success: bool
    invocation_id: str = ""
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    node_results: list[dict[str, object]] = field(default_factory=list)
    output_tail: str = ""
    elapsed: float = 0.0
    returncode: int = 0

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(n for (kind, status), n in self.counts.items() if kind == resource_type and status in statuses)

    def failed_nodes(self) -> list[dict[str, object]]:
        return [node for node in self.node_results if node["status"] in ("error", "fail", "runtime error")]


def target_path() -> Path:
    """dbt's artifacts folder: DBT_TARGET_PATH when set, else `target/`."""
    return Path(os.environ.get("DBT_TARGET_PATH", PROJECT_DIR / "target"))


def step_run_results(run_id: str) -> list[dict]:
    """What dbt recorded in a pipeline run's dbt step (dagster-dbt gives each invocation a folder:
    target/dbt_models-<run id>-<n>): the run_results.json of its last `dbt build` and of the tests
    run after its publish, oldest first; [] when dbt wrote none."""
    found = sorted(target_path().glob(f"dbt_models-{run_id[:7]}-*/run_results.json"), key=lambda p: p.stat().st_mtime)
    documents: list[dict] = []
    for path in found:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):  # a dbt killed while writing it
            continue
        if document.get("args", {}).get("which") == "build":  # a retry's build replaces what came before
            documents = []
        documents.append(document)
    return documents


def dbt_command(args: list[str], target: str | None, dbt_vars: dict[str, object] | None) -> list[str]:
    command = [str(Path(sys.executable).parent / "dbt"), *args]
    command += ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    if target:
        command += ["--target", target]
    other_vars = {name: value for name, value in (dbt_vars or {}).items() if name not in RUN_SETTINGS}
    if other_vars:
        command += ["--vars", json.dumps(other_vars)]
    return command


def dbt_environment(dbt_vars: dict[str, object] | None) -> dict[str, str]:
    """The environment of a dbt process: this one's, with the run settings of `dbt_vars` set (and
    the unset ones removed, so a setting never leaks from the calling shell into a run)."""
    environment = {**os.environ, "DBT_USE_COLORS": "false"}
    for name in RUN_SETTINGS:
        environment.pop(f"ML_FEATURES_{name.upper()}", None)
        if (dbt_vars or {}).get(name) is not None:
            environment[f"ML_FEATURES_{name.upper()}"] = str(dbt_vars[name])
    return environment


def run_dbt(
    args: list[str], target: str | None = None, dbt_vars: dict[str, object] | None = None, quiet: bool = False
) -> DbtSummary:
    """Run `dbt <args>` against this project and summarise it; output to the terminal, or nowhere with `quiet`."""
    environment = dbt_environment(dbt_vars)
    results_file = target_path() / "run_results.json"
    results_file.unlink(missing_ok=True)
    completed = subprocess.run(
        dbt_command(args, target, dbt_vars),
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=quiet,
        text=True,
        check=False,
    )
    output = plain((completed.stdout or "") + (completed.stderr or ""))
    summary = DbtSummary(success=completed.returncode == 0, output_tail=output[-4000:], returncode=completed.returncode)
    if results_file.exists():
        summarise(json.loads(results_file.read_text()), summary)
    else:
        summary.failures.append(f"dbt {args[0]} wrote no results (exit {completed.returncode}) {output[-2000:]}")
    return summary


def summarise(run_results: dict, summary: DbtSummary) -> None:
    """Add a run_results.json document to `summary` (its invocation id stays the first document's)."""
    summary.invocation_id = summary.invocation_id or run_results["metadata"]["invocation_id"]
    summary.elapsed += run_results.get("elapsed_time") or 0.0
    for result in run_results["results"]:
        resource_type = result["unique_id"].split(".")[0]
        summary.counts[(resource_type, result["status"])] += 1
        summary.node_results.append(
            {
                "invocation_id": summary.invocation_id,
                "unique_id": result["unique_id"],
                "resource_type": resource_type,
                "status": result["status"],
                "seconds": result.get("execution_time") or 0.0,
                "failures": result.get("failures") or 0,
                "message": plain(result.get("message") or ""),
                "relation_name": result.get("relation_name"),
            }
        )
        if result["status"] in ("error", "fail", "runtime error"):
            summary.failures.append(f"{result['unique_id']}: {result['status']}: {plain(result.get('message') or '')}")
