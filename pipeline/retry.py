"""Transient errors are retried with exponential backoff; everything else fails at once.

Transient: a connection refused, reset or timed out; an HTTP 429 or 5xx answer that outlasted
dlt's own retries; a database that is not reachable yet; the DuckDB file locked by another
process. Everything else (a missing setting, a refused token, a bad record, a failed dbt test)
is a data or configuration error: retrying cannot fix it, so the stage fails with its message.

    ML_FEATURES_RETRIES        attempts in all, default 5
    ML_FEATURES_RETRY_WAIT     seconds before the first retry, doubled each time (1, 2, 4, 8), default 1
"""

import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
import sqlalchemy.exc as sa_exc

from extract.errors import causes
from pipeline.console import first_line, log

T = TypeVar("T")

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


class GaveUp(RuntimeError):
    """A transient error outlasted every retry; the message says what failed and how often it was tried."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    first_wait: float = 1.0
    max_wait: float = 60.0

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        return cls(
            attempts=max(1, int(os.environ.get("ML_FEATURES_RETRIES", "5"))),
            first_wait=float(os.environ.get("ML_FEATURES_RETRY_WAIT", "1")),
        )

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): 1, 2, 4, 8, ..."""
        return min(self.max_wait, self.first_wait * 2 ** (attempt - 1))


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


def retrying(
    action: Callable[[], T], what: str, policy: RetryPolicy, prefix: str = "", retries: list[str] | None = None
) -> T:
    """`action()`, retried on transient errors with exponential backoff; GaveUp after the last attempt.

    Each retry is said plainly: what failed, why it is transient, how long until the next attempt;
    its reason is appended to `retries` when given.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except Exception as error:
            reason = transient_reason(error)
            if reason is None:
                raise
            if attempt == policy.attempts:
                raise GaveUp(
                    f"{what}: {reason}; still failing after {policy.attempts} attempts: {first_line(str(error))}"
                ) from error
            wait = policy.wait(attempt)
            if retries is not None:
                retries.append(reason)
            log(
                f"{prefix}{what}: {reason} (transient): retrying in {wait:g} s "
                f"(attempt {attempt + 1} of {policy.attempts})"
            )
            time.sleep(wait)
    raise AssertionError("unreachable")
