"""Run dbt as a subprocess with the project's own profiles.yml and summarise its run_results.json.

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

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class DbtSummary:
    """Counts from one dbt invocation: nodes by type and status, and the failures by name."""

    success: bool
    invocation_id: str = ""
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    node_results: list[dict[str, object]] = field(default_factory=list)

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(n for (kind, status), n in self.counts.items() if kind == resource_type and status in statuses)


def target_path() -> Path:
    """dbt's artifacts folder: DBT_TARGET_PATH when set, else `target/`."""
    return Path(os.environ.get("DBT_TARGET_PATH", PROJECT_DIR / "target"))


def run_dbt(
    args: list[str],
    target: str | None = None,
    dbt_vars: dict[str, object] | None = None,
    quiet: bool = False,
) -> DbtSummary:
    """Run `dbt <args>` against this project and summarise what it did."""
    command = [str(Path(sys.executable).parent / "dbt"), *args]
    command += ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    if target:
        command += ["--target", target]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars)]
    results_file = target_path() / "run_results.json"
    results_file.unlink(missing_ok=True)
    completed = subprocess.run(command, cwd=PROJECT_DIR, capture_output=quiet, text=True, check=False)
    summary = DbtSummary(success=completed.returncode == 0)
    if not results_file.exists():
        output = (completed.stdout or "") + (completed.stderr or "")
        summary.failures.append(f"dbt {args[0]} wrote no results (exit {completed.returncode}) {output[-2000:]}")
        return summary
    run_results = json.loads(results_file.read_text())
    summary.invocation_id = run_results["metadata"]["invocation_id"]
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
                "message": result.get("message") or "",
            }
        )
        if result["status"] in ("error", "fail"):
            summary.failures.append(f"{result['unique_id']}: {result['status']}: {result.get('message') or ''}")
    return summary
