"""What a dbt invocation did, read from its structured JSON log (`--log-format-file json`).

dbt writes run_results.json only when it ends; a dbt that was killed leaves none, but its JSON log
was written event by event: the invocation id, the number of nodes it planned, every node it
finished with its status, and the message of the on-run-end publish (macros/publish.sql logs
`published ...` once the publish transaction has committed, or `not published: ...`).
"""

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.console import plain


@dataclass
class DbtLog:
    invocation_id: str = ""
    nodes_total: int | None = None
    node_results: list[dict[str, object]] = field(default_factory=list)
    published: bool | None = None
    publish_message: str = ""
    completed: bool = False
    last_event_at: dt.datetime | None = None

    def count(self, resource_type: str, *statuses: str) -> int:
        return sum(1 for n in self.node_results if n["resource_type"] == resource_type and n["status"] in statuses)

    def describe(self, killed_by: int | None = None) -> str:
        """'dbt invocation ... was killed (signal 9): 95 of 116 nodes done (...); gold not published ...'.

        `killed_by` the signal when known; a dbt found dead afterwards that never logged its end was killed too.
        """
        done = f"{len(self.node_results)} of {self.nodes_total if self.nodes_total is not None else '?'} nodes"
        signal = f" (signal {killed_by})" if killed_by else ""
        if self.completed:
            ended = f"completed, then was killed{signal}" if killed_by else "completed"
        else:
            ended = f"was killed{signal}" if killed_by else "was killed (or crashed)"
        counts = (
            f"{self.count('model', 'success')} models built, tests {self.count('test', 'pass')} passed, "
            f"{self.count('test', 'warn')} warned, {self.count('test', 'fail', 'error')} failed, "
            f"{self.count('model', 'error')} models failed"
        )
        return f"dbt invocation {self.invocation_id} {ended}: {done} done ({counts}); {self.publish_outcome()}"

    def publish_outcome(self) -> str:
        if self.published:
            return f"gold PUBLISHED to marts by this invocation ({self.publish_message})"
        if self.published is False:
            return f"gold not published ({self.publish_message}); marts keeps the previous version"
        return "gold not published (the build never reached its publish); marts keeps the previous version"


def node_result(event: dict) -> dict[str, object] | None:
    node = event["data"].get("node_info") or {}
    result = event["data"].get("run_result") or {}
    resource_type = node.get("resource_type")
    if not resource_type or resource_type == "operation":  # hooks are not nodes
        return None
    return {
        "invocation_id": event["info"]["invocation_id"],
        "unique_id": node.get("unique_id"),
        "resource_type": resource_type,
        "status": result.get("status") or node.get("node_status"),
        "seconds": result.get("execution_time") or 0.0,
        "failures": result.get("num_failures") or 0,
        "message": plain(result.get("message") or ""),
        "relation_name": (node.get("node_relation") or {}).get("relation_name") or None,
    }


def read_dbt_log(path: Path, invocation_id: str | None = None) -> DbtLog:
    """The last invocation in `path` (or the one named), as far as its log goes; empty when there is none.

    A line cut short by a kill is skipped.
    """
    logs: dict[str, DbtLog] = {}
    last = ""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return DbtLog()
    for line in lines:
        try:
            event = json.loads(line)
            info, data = event["info"], event["data"]
        except (ValueError, KeyError, TypeError):
            continue
        last = info.get("invocation_id") or last
        current = logs.setdefault(last, DbtLog(invocation_id=last))
        current.last_event_at = dt.datetime.fromisoformat(info["ts"].rstrip("Z")) if info.get("ts") else None
        name = info.get("name")
        if name == "ConcurrencyLine":
            current.nodes_total = data.get("node_count")
        elif name == "NodeFinished":
            result = node_result(event)
            if result:
                current.node_results.append(result)
        elif name == "JinjaLogInfo" and "on-run-end" in str((data.get("node_info") or {}).get("unique_id")):
            message = str(data.get("msg") or "")
            if message.startswith("published"):
                current.published, current.publish_message = True, message
            elif message.startswith("not published"):
                current.published, current.publish_message = False, message
        elif name == "CommandCompleted":
            current.completed = True
    return logs.get(invocation_id or last, DbtLog())
