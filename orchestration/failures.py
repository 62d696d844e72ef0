"""Which failures Dagster retries: transient ones only (a lock, a refused connection, HTTP 429/5xx).

Every asset has RETRY: 3 retries with exponential backoff (`ML_FEATURES_RETRIES` retries, default
3; `ML_FEATURES_RETRY_WAIT` seconds, default 5). Dagster waits (2**n - 1) * wait before retry n:
5, 15 and 35 s by default (dagster/_core/definitions/policy.py calculate_delay).

A transient error becomes `transient(message)`: a Failure Dagster retries, whose message the run
keeps when the last retry fails too (the summary names the cause, e.g. the process holding the
lock, rather than Dagster's "Exceeded max_retries"). A data or configuration error (a failed dbt
test, a missing file, a refused token) cannot be fixed by retrying: `fail_fast` fails the step at once.
"""

import os

from dagster import Backoff, Failure, RetryPolicy

from pipeline.transient import transient_reason

RETRY = RetryPolicy(
    max_retries=int(os.environ.get("ML_FEATURES_RETRIES", "3")),
    delay=float(os.environ.get("ML_FEATURES_RETRY_WAIT", "5")),
    backoff=Backoff.EXPONENTIAL,
)


def fail_fast(message: str) -> Failure:
    """A failure Dagster does not retry."""
    return Failure(description=message, allow_retries=False)


def transient(message: str) -> Failure:
    """A failure Dagster retries (RETRY); `message` is what the run records if every attempt fails."""
    return Failure(
        description=f"{message} (transient: tried {RETRY.max_retries + 1} times with exponential backoff)",
        allow_retries=True,
    )


def retried_or_failed(error: Exception, what: str) -> Failure:
    """A retried Failure when `error` (or an error it wraps) is transient, else one failing at once."""
    reason = transient_reason(error)
    if reason is not None:
        return transient(f"{what} failed: {reason}")
    return fail_fast(f"{what} failed: {error} (a data or configuration error: not retried)")
