"""Run dbt as a subprocess with the project's own profiles.yml and summarise what it did.

A subprocess, not dbt's in-process runner: dbt-duckdb keeps its DuckDB connection open for the
life of the process, which would lock the warehouse file against the steps that follow.

dbt writes run_results.json only when it ends. A dbt that was killed leaves none, so when a
`log_dir` is given dbt also writes its structured JSON log there (one event a line, written as
it happens): the nodes it finished, and the publish decision of its on-run-end hook, are read
from that log instead (pipeline/dbt_log.py), and a kill is said as a kill.
"""

import json
import os
import subprocess
import sys
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.console import plain
from pipeline.dbt_log import DbtLog, read_dbt_log

PROJECT_DIR = Path(__file__).resolve().parent.parent
# settings of one run, passed as environment variables ML_FEATURES_<NAME> (macros/ml_helpers.sql:
# run_setting), not --vars: dbt parses the whole project again whenever --vars change (about 10 s);
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
    nodes_total: int | None = None
    published: bool | None = None
    publish_message: str = ""
    from_log: bool = False
    ended: str = ""  # how dbt ended when it did not end on its own (killed), from its log

    @property
    def killed_by(self) -> int | None:
        """The signal that ended dbt (9 for SIGKILL), or None when it exited on its own."""
        return -self.returncode if self.returncode < 0 else None

    def nodes_done(self) -> int:
        """Nodes finished; the on-run-start/end hooks are in run_results.json but not in dbt's node count."""
        return sum(1 for node in self.node_results if node["resource_type"] != "operation")

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(n for (kind, status), n in self.counts.items() if kind == resource_type and status in statuses)

    def failed_nodes(self) -> list[dict[str, object]]:
        return [node for node in self.node_results if node["status"] in ("error", "fail", "runtime error")]


def target_path() -> Path:
    """dbt's artifacts folder: DBT_TARGET_PATH when set, else `target/`."""
    return Path(os.environ.get("DBT_TARGET_PATH", PROJECT_DIR / "target"))


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


def stream_output(
    command: list[str], environment: dict[str, str], on_line: Callable[[str], None], pass_fds: tuple[int, ...] = ()
) -> tuple[int, str]:
    """Run `command`, pass each output line (without colours) to `on_line`; (exit code, last lines)."""
    tail: deque[str] = deque(maxlen=60)
    with subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        pass_fds=pass_fds,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = plain(line.rstrip())
            tail.append(line)
            on_line(line)
    return process.returncode, "\n".join(tail)


def run_dbt(
    args: list[str],
    target: str | None = None,
    dbt_vars: dict[str, object] | None = None,
    quiet: bool = False,
    on_line: Callable[[str], None] | None = None,
    log_dir: Path | None = None,
    pass_fds: tuple[int, ...] = (),
) -> DbtSummary:
    """Run `dbt <args>` against this project and summarise what it did.

    Output goes to the terminal, or nowhere with `quiet`, or line by line to `on_line`. With
    `log_dir`, dbt writes its JSON log there, and a dbt that left no run_results.json (killed) is
    summarised from it. `pass_fds` stay open in the dbt process (the run's liveness lock).
    """
    command = dbt_command(args, target, dbt_vars)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        command += ["--log-path", str(log_dir), "--log-format-file", "json"]
    environment = dbt_environment(dbt_vars)
    results_file = target_path() / "run_results.json"
    results_file.unlink(missing_ok=True)
    if on_line is not None:
        returncode, output = stream_output(command, environment, on_line, pass_fds)
    else:
        completed = subprocess.run(
            command, cwd=PROJECT_DIR, env=environment, capture_output=quiet, text=True, check=False, pass_fds=pass_fds
        )
        returncode, output = completed.returncode, plain((completed.stdout or "") + (completed.stderr or ""))
    summary = DbtSummary(success=returncode == 0, output_tail=output[-4000:], returncode=returncode)
    dbt_log = read_dbt_log(log_dir / "dbt.log") if log_dir is not None else DbtLog()
    summary.nodes_total, summary.published, summary.publish_message = (
        dbt_log.nodes_total,
        dbt_log.published,
        dbt_log.publish_message,
    )
    if results_file.exists():
        summarise(json.loads(results_file.read_text()), summary)
    elif dbt_log.invocation_id:
        summarise_log(dbt_log, summary)
    else:
        summary.failures.append(f"dbt {args[0]} wrote no results (exit {returncode}) {output[-2000:]}")
    if dbt_log.invocation_id and (summary.killed_by or summary.from_log):
        summary.ended = dbt_log.describe(summary.killed_by)
        summary.failures.append(summary.ended)
    return summary


def summarise_log(dbt_log: DbtLog, summary: DbtSummary) -> None:
    """Fill `summary` from dbt's JSON log: the nodes it finished before it ended (killed)."""
    summary.invocation_id, summary.from_log = dbt_log.invocation_id, True
    for node in dbt_log.node_results:
        summary.counts[(str(node["resource_type"]), str(node["status"]))] += 1
        summary.node_results.append(node)
        if node["status"] in ("error", "fail", "runtime error"):
            summary.failures.append(f"{node['unique_id']}: {node['status']}: {node['message']}")


def summarise(run_results: dict, summary: DbtSummary) -> None:
    """Fill `summary` from a run_results.json document."""
    summary.invocation_id = run_results["metadata"]["invocation_id"]
    summary.elapsed = run_results.get("elapsed_time") or 0.0
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
