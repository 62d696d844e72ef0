"""The consumer under kills, real parts: redis-server, the service under uvicorn, the consumer as a
subprocess that SIGKILLs itself right before a chosen call, the DuckDB warehouse, then real dbt.

Each moment gets its own records, POSTed, then a consumer killed at that moment: it first takes back
the messages the consumer killed before it left pending (and the package it left half loaded), then
dies in that batch, leaving them pending again; at the end another consumer takes them over with
XAUTOCLAIM. Afterwards raw holds exactly what an uninterrupted run loads,
the messages as they were published, each once, all in completed loads: 0 lost, 0 duplicated; and
the staging views built by dbt hold each message once (their unique tests pass).
"""

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import redis
from conftest import free_port
from extract_support import JOB_COMMITTED, LOAD_RECORDED
from realtime_support import Stack, start_stack

from pipeline.warehouse.dbt_runner import run_dbt
from realtime.broker import RedisStreamsBroker
from realtime.contract import COLUMNS
from realtime.redis_server import RedisServer
from realtime.settings import Settings

TABLES = {"transactions": "transactions", "events": "events"}
# the moments a consumer dies at: (name, the call it dies right before, which call)
MOMENTS = [
    ("before the load", "realtime.consumer:load", 1),
    ("mid-load: a job's rows committed, not yet marked done", JOB_COMMITTED, 1),
    ("load recorded, its package not yet archived", LOAD_RECORDED, 1),
    ("after the online store, before XACK", "realtime.broker:RedisStreamsBroker.ack", 1),
]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(tmp_path / "data")
    try:
        yield running
    finally:
        running.close()


def post_records(stack: Stack, tag: str, count: int = 15) -> None:
    """`count` transactions and events (one transaction in two versions) and two rejected records."""
    transactions = [
        {
            "transaction_id": f"{tag}-t{i}",
            "user_id": str(i % 4 + 1),
            "amount": f"{i}.25",
            "currency": "USD",
            "status": "pending",
            "device_type": "mobile",
            "created_at": f"2026-08-30T10:{i:02d}:00Z",
            "updated_at": f"2026-08-30T10:{i:02d}:00Z",
        }
        for i in range(count)
    ]
    transactions.append({**transactions[0], "status": "completed", "updated_at": "2026-08-30T12:00:00Z"})
    events = [
        {"event_id": f"{tag}-e{i}", "user_id": str(i % 4 + 1), "occurred_at": f"2026-08-30T09:{i:02d}:00Z"}
        for i in range(count)
    ]
    assert stack.post("transactions", transactions).status_code == 202
    assert stack.post("events", events).status_code == 202
    assert stack.post("transactions", {**transactions[1], "amount": "-1"}).status_code == 422
    assert stack.post("events", {"event_id": f"{tag}-bad"}).status_code == 422


def published(stack: Stack) -> dict[str, list[tuple]]:
    """What an uninterrupted consumer loads: every message of each stream, once, as published."""
    client = stack.client()
    result: dict[str, list[tuple]] = {}
    for kind, columns in COLUMNS.items():
        rows = []
        for message_id, fields in client.xrange(f"ml_features:{kind}"):
            record = json.loads(fields[b"record"])
            rows.append((message_id.decode(), *(record[column] for column in columns)))
        result[kind] = sorted(rows)
    letters = client.xrange("ml_features:dead_letters")
    result["dead_letters"] = sorted((mid.decode(), fields[b"record"].decode()) for mid, fields in letters)
    return result


def loaded(stack: Stack) -> dict[str, list[tuple]]:
    """Every row of raw_stream (of any load, completed or not), as the same tuples."""
    result: dict[str, list[tuple]] = {}
    for kind, columns in COLUMNS.items():
        result[kind] = sorted(stack.query(f"select _stream_message_id, {', '.join(columns)} from raw_stream.{kind}"))
    result["dead_letters"] = sorted(stack.query("select _stream_message_id, record from raw_stream.dead_letters"))
    return result


def rows_outside_completed_loads(stack: Stack) -> int:
    return sum(
        stack.query(
            f"select count(*) from raw_stream.{table} where _dlt_load_id not in "
            "(select load_id from raw_stream._dlt_loads where status = 0)"
        )[0][0]
        for table in ("transactions", "events", "dead_letters")
    )


def test_a_killed_consumer_loses_and_duplicates_nothing(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # an uninterrupted run first: what every later check compares with
    post_records(stack, "clean")
    consumer = stack.start_consumer()
    stack.wait_consumed(consumer)
    stack.stop_consumers()
    assert loaded(stack) == published(stack)

    # then a consumer killed at each moment in turn: each next one first takes back the messages the one
    # before left pending (and the package it left half loaded), with new records, and dies in that batch
    for number, (moment, call, nth) in enumerate(MOMENTS):
        post_records(stack, f"kill{number}")
        killed = stack.start_consumer(kill_at=call, nth=nth)
        assert stack.wait_pending(killed) == -signal.SIGKILL, (moment, killed.stdout.read())
        pending = sum(unacknowledged for _, _, unacknowledged in stack.backlog().values())
        assert pending > 0, moment  # delivered to the dead consumer, never acknowledged
    # another consumer takes the last one's messages over (XAUTOCLAIM, claim idle time 1 s)
    again = stack.start_consumer(ML_FEATURES_REALTIME_CONSUMER="consumer-2")
    stack.wait_consumed(again)
    stack.stop_consumers()
    assert loaded(stack) == published(stack)
    assert rows_outside_completed_loads(stack) == 0

    # dbt's staging views of the stream hold each message once (unique source_message_id: tested)
    for name in ("ML_FEATURES_DATA_DIR", "ML_FEATURES_DUCKDB_PATH", "DBT_TARGET_PATH"):
        monkeypatch.setenv(name, stack.environment[name])
    selection = ["--select", "stg_stream__transactions", "stg_stream__events", "stg_stream__dead_letters"]
    build = run_dbt(["build", *selection], quiet=True)
    assert build.success, build.failures
    assert build.count("test", "pass") == 5
    counts = stack.query(
        "select (select count(*) from staging.stg_stream__transactions),"
        " (select count(distinct source_message_id) from staging.stg_stream__transactions),"
        " (select count(*) from staging.stg_stream__events), (select count(*) from staging.stg_stream__dead_letters)"
    )
    expected = published(stack)
    assert counts == [(len(expected["transactions"]),) * 2 + (len(expected["events"]), len(expected["dead_letters"]))]
    assert counts[0][0] == (1 + len(MOMENTS)) * 16 and counts[0][3] == (1 + len(MOMENTS)) * 2


def test_the_consumer_waits_while_another_process_holds_the_warehouse(stack: Stack) -> None:
    stack.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    holder = duckdb.connect(str(stack.duckdb_path))  # as a dbt build would, for its whole run
    try:
        consumer = stack.start_consumer()
        post_records(stack, "locked", count=3)
        # the consumer read them and waits for the file: they stay pending, nothing is lost
        with pytest.raises(AssertionError, match="messages still waiting"):
            stack.wait_consumed(consumer, timeout=6)
        assert sum(unacknowledged for _, _, unacknowledged in stack.backlog().values()) > 0
        assert consumer.poll() is None
    finally:
        holder.close()
    stack.wait_consumed(consumer)
    assert loaded(stack) == published(stack)


def test_only_acknowledged_entries_older_than_the_retention_are_trimmed(tmp_path: Path) -> None:
    with RedisServer(free_port(), tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        broker = RedisStreamsBroker(client, Settings(redis_url=server.url))
        broker.ensure_group()
        ids = [
            message_id
            for message_id, _ in broker.publish("events", [(f"e{i}", {"event_id": f"e{i}"}) for i in range(4)])
        ]
        delivered = broker.read("c1", 3, 100)  # e0, e1, e2 delivered; e3 not yet
        broker.ack([delivered[0], delivered[2]])  # e1 stays pending
        assert broker.trim(older_than_ms=int(time.time() * 1000) + 60_000) == 1  # e0 only
        assert [mid.decode() for mid, _ in client.xrange("ml_features:events")] == ids[1:]
        broker.ack([delivered[1]])
        assert broker.trim(older_than_ms=int(time.time() * 1000) + 60_000) == 2  # e1, e2; e3 never delivered
        assert [mid.decode() for mid, _ in client.xrange("ml_features:events")] == ids[3:]
        assert broker.trim(older_than_ms=0) == 0  # within the retention: nothing goes
