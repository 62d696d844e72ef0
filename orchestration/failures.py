"""Which failures Dagster retries: transient ones only (a lock, a refused connection, HTTP 429/5xx).

Every asset has RETRY: 3 retries with exponential backoff (`ML_FEATURES_RETRY_WAIT` seconds before
the first, default 5; `ML_FEATURES_RETRIES` retries, default 3). A data or configuration error
(a failed dbt test, a bad setting, a refused token) cannot be fixed by retrying: `fail_fast`
turns it into a Failure that Dagster does not retry, with a message a person can act on.
"""

import os

from dagster import Backoff, Failure, RetryPolicy

from pipeline.retry import transient_reason

RETRY = RetryPolicy(
    max_retries=int(os.environ.get("ML_FEATURES_RETRIES", "3")),
    delay=float(os.environ.get("ML_FEATURES_RETRY_WAIT", "5")),
    backoff=Backoff.EXPONENTIAL,
)


def fail_fast(message: str) -> Failure:
    """A failure Dagster does not retry."""
    return Failure(description=message, allow_retries=False)


def retried_or_failed(error: Exception, what: str) -> Exception:
    """`error` itself when it is transient (Dagster retries the step), else a Failure that is not retried."""
    reason = transient_reason(error)
    if reason is not None:
        return error
    return fail_fast(f"{what} failed: {error}")
