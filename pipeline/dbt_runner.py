"""Run dbt in-process with the project's own profiles.yml and summarise what it did."""

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dbt.cli.main import dbtRunner

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class DbtSummary:
    """Counts from one dbt invocation: nodes by type and status, and the failures by name."""

    success: bool
    invocation_id: str
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(n for (kind, status), n in self.counts.items() if kind == resource_type and status in statuses)


def run_dbt(args: list[str], target: str | None = None, dbt_vars: dict[str, str] | None = None) -> DbtSummary:
    """Invoke `dbt <args>` against this project (never `--full-refresh` behind the user's back)."""
    command = [*args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    if target:
        command += ["--target", target]
    if dbt_vars:
        command += ["--vars", json.dumps(dbt_vars)]
    result = dbtRunner().invoke(command)
    summary = DbtSummary(success=result.success, invocation_id="")
    run_results = getattr(result.result, "results", None) or []
    for node_result in run_results:
        node = node_result.node
        status = str(node_result.status)
        summary.counts[(node.resource_type, status)] += 1
        if status in ("error", "fail"):
            summary.failures.append(f"{node.resource_type} {node.name}: {status}")
    run_results_file = PROJECT_DIR / "target" / "run_results.json"
    if run_results_file.exists():
        summary.invocation_id = json.loads(run_results_file.read_text())["metadata"]["invocation_id"]
    if result.exception is not None:
        summary.failures.append(f"dbt: {result.exception}")
    return summary
