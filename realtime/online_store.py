"""Online feature store in Redis: per-user state updated idempotently from each micro-batch."""

from __future__ import annotations

import redis


def apply_batch(
    client: redis.Redis,
    transactions: list[dict[str, str | None]],
    events: list[dict[str, str | None]],
) -> None:
    """Add a micro-batch of contract records (the consumer's, after its load committed) to the online
    state. Idempotent: applying the same records again changes nothing."""
    # Placeholder while the real state lands (same commit series): accepts and ignores the batch.
    del client, transactions, events
