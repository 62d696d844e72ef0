"""Which errors are transient (Dagster retries their step: orchestration/failures.py) and which
are not.

Transient: a connection refused, reset or timed out; an HTTP 429 or 5xx answer that outlasted
dlt's own retries; a database that is not reachable yet; the DuckDB file locked by another
process. Everything else (a missing setting, a refused token, a bad record, a failed dbt test)
is a data or configuration error: retrying cannot fix it, so the step fails with its message.
"""

import re
import socket

import requests
import sqlalchemy.exc as sa_exc

from extract.errors import causes
from pipeline.console import first_line

LOCK_MESSAGE = "Could not set lock on file"
LOCK_HOLDER = re.compile(r'lock on file "(?P<file>[^"]+)".*?held in (?P<program>\S+) \(PID (?P<pid>\d+)\)', re.S)
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# what drivers say when a database server cannot be reached (yet)
CONNECTION_TROUBLE = re.compile(
    r"connection refused|could not connect|can't connect|timed? ?out|connection reset|server closed the connection"
    r"|too many connections|the database system is starting up|lost connection|temporarily unavailable",
    re.I,
)


class TransientError(RuntimeError):
    """A failure worth retrying; raised where the cause is only known from a message (dbt's output)."""


def lock_holder(text: str) -> str:
    """'PID 123, /usr/bin/python3' from DuckDB's lock message, or '' when it does not say."""
    match = LOCK_HOLDER.search(text)
    return f"PID {match['pid']}, {match['program']}" if match else ""


def locked_file(text: str) -> str | None:
    match = LOCK_HOLDER.search(text) or re.search(r'lock on file "(?P<file>[^"]+)"', text)
    return match["file"] if match else None


def describe_lock(text: str) -> str:
    """'the warehouse data/warehouse.duckdb is locked by another process (PID 123, /usr/bin/python3)'."""
    path, holder = locked_file(text), lock_holder(text)
    return f"the warehouse {path or ''} is locked by another process{f' ({holder})' if holder else ''}".replace(
        "warehouse  is", "warehouse is"
    )


def database_unreachable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    return isinstance(error, sa_exc.OperationalError) and bool(CONNECTION_TROUBLE.search(str(error)))


def transient_reason(error: BaseException) -> str | None:
    """Why `error` is worth retrying (one short phrase), or None when it is not."""
    for cause in causes(error):
        text = str(cause)
        if LOCK_MESSAGE in text:
            return describe_lock(text)
        if isinstance(cause, TransientError):
            return first_line(text)
        if isinstance(cause, requests.HTTPError) and cause.response is not None:
            if cause.response.status_code in RETRYABLE_STATUS:
                return f"HTTP {cause.response.status_code} {cause.response.reason}"
            return None
        if isinstance(cause, requests.ConnectionError | requests.Timeout):
            return f"connection failed ({type(cause).__name__})"
        if isinstance(cause, ConnectionError | TimeoutError | socket.timeout):
            return f"connection failed ({type(cause).__name__})"
        if database_unreachable(cause):
            return f"database unreachable ({first_line(text, 120)})"
    return None
