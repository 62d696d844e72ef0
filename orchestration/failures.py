"""Which failures Dagster retries: transient ones only (a lock, a refused connection, HTTP 429/5xx).

Every step is `@with_retries`: a transient failure is retried 3 times with exponential backoff
(RETRY: `ML_FEATURES_RETRIES` retries, default 3; `ML_FEATURES_RETRY_WAIT` seconds, default 5).
Dagster waits (2**n - 1) * wait before retry n: 5, 15 and 35 s by default
(dagster/_core/definitions/policy.py calculate_delay).

Ctrl-C (SIGINT) or SIGTERM is never retried: the step stops, no step starts after it and the run is
recorded canceled, "interrupted by SIGTERM". That is why RETRY is not the steps' RetryPolicy:
Dagster retries a step that has one whatever stopped it, an interrupt included
(dagster/_core/execution/plan/utils.py step_execution_error_boundary), and so started the step
again on Ctrl-C.

A transient error becomes `transient(message)`: a Failure Dagster retries, whose message the run
keeps when the last retry fails too (the summary names the cause, e.g. the process holding the
lock, rather than Dagster's "Exceeded max_retries"). A data or configuration error (a failed dbt
test, a missing file, a refused token) cannot be fixed by retrying: `fail_fast` fails the step at once,
and so does an unexpected error (a bug), which a RetryPolicy retried too.
"""

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetExecutionContext,
    Backoff,
    DagsterExecutionInterruptedError,
    Failure,
    RetryPolicy,
    RetryRequested,
)

from pipeline.processes import stop_signals
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
    """A failure `with_retries` retries (RETRY); `message` is what the run records if every attempt fails."""
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


def interrupt_reason() -> str | None:
    """The reason, e.g. "interrupted by SIGINT", once SIGINT or SIGTERM arrived (processes.signals_noted)."""
    signals = stop_signals()
    return f"interrupted by {signals[0].name}" if signals else None


def interrupted(context: AssetExecutionContext, reason: str) -> DagsterExecutionInterruptedError:
    """The interrupt as Dagster handles it when no RetryPolicy is set: the step fails, no step starts
    after it, the run ends canceled (it is recorded canceling here, with the reason)."""
    context.instance.report_run_canceling(context.run, message=reason)
    return DagsterExecutionInterruptedError(reason)


def outcome(context: AssetExecutionContext, error: BaseException) -> BaseException:
    """What a step that raised `error` raises to Dagster: the interrupt once SIGINT or SIGTERM came
    (dbt or dlt stopped by it fail in their own words: an exit without results, a load that
    failed), a retry for a transient failure, else `error` itself."""
    reason = interrupt_reason()
    if reason is None and isinstance(error, KeyboardInterrupt | DagsterExecutionInterruptedError):
        reason = "interrupted"  # a signal sent before signals_noted (or a KeyboardInterrupt in code)
    if reason is not None:
        return interrupted(context, reason)
    if isinstance(error, Failure) and error.allow_retries:
        return RetryRequested(
            max_retries=RETRY.max_retries, seconds_to_wait=RETRY.calculate_delay(context.retry_number + 1)
        )
    return error


def with_retries(compute: Callable[..., Any]) -> Callable[..., Any]:
    """The step `compute` (a function or a generator of events, taking the context first), with
    transient failures retried (RETRY) and SIGINT/SIGTERM stopping the run (see the module's doc)."""

    def check(context: AssetExecutionContext) -> None:
        reason = interrupt_reason()  # also one dlt took and swallowed: its load finished regardless
        if reason is not None:
            raise interrupted(context, reason)

    def raise_outcome(context: AssetExecutionContext, error: BaseException) -> None:
        raised = outcome(context, error)
        if raised is error:
            raise error
        raise raised from error

    if inspect.isgeneratorfunction(compute):

        @functools.wraps(compute)
        def steps(context: AssetExecutionContext, *args: Any, **kwargs: Any) -> Iterator[Any]:
            check(context)
            try:
                yield from compute(context, *args, **kwargs)
            except GeneratorExit:
                raise
            except BaseException as error:
                raise_outcome(context, error)
            check(context)

        return steps

    @functools.wraps(compute)
    def step(context: AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
        check(context)
        try:
            result = compute(context, *args, **kwargs)
        except BaseException as error:
            raise_outcome(context, error)
        check(context)
        return result

    return step
