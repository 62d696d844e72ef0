"""The ingestion service, real parts: redis-server, the app under uvicorn, HTTP on 127.0.0.1
(tests/python/realtime_support.py). 202 with ids, 422 with per-field reasons and a dead letter,
401, 413, idempotency on the record's key, /metrics; and (with the consumer and a real dbt build)
streamed rows reaching the features once and dead letters reaching the quarantine with their reasons."""

import contextlib
import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from conftest import RUN_DATE, Warehouse, descendants, free_port
from realtime_support import REPO_ROOT, TEST_TOKEN, Stack, stack_environment, start_stack

from pipeline.reporting.run_summary import quarantine_by_table
from pipeline.warehouse.dbt_runner import run_dbt
from pipeline.warehouse.monitoring import first_days, last_publish_time
from realtime.broker import RedisStreamsBroker

EVENT = {
    "event_id": "evt_rt_1",
    "user_id": "1",
    "session_id": "s1",
    "event_type": "page_view",
    "device_type": "mobile",
    "occurred_at": "2026-03-01T10:00:00Z",
    "properties": {"page": "/home"},
}
TRANSACTION = {
    "transaction_id": "rt_1",
    "user_id": 1,
    "amount": 12.5,
    "currency": "usd",
    "status": "completed",
    "device_type": "mobile",
    "created_at": "2026-03-01T10:00:00Z",
    "updated_at": "2026-03-01T10:00:00Z",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis and the service on an empty data folder, for the module's service tests."""
    limits = {"ML_FEATURES_REALTIME_MAX_REQUEST_BYTES": "20000", "ML_FEATURES_REALTIME_MAX_RECORDS": "50"}
    running = start_stack(tmp_path_factory.mktemp("realtime") / "data", **limits)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def stack(service: Stack) -> Stack:
    """The module's service with empty streams (the consumer group made again, as the service does)."""
    client = service.client()
    client.flushall()
    RedisStreamsBroker(client, service.settings()).ensure_group()
    return service


def metrics(stack: Stack) -> dict[str, float]:
    """The service's metrics now: `name{labels}` -> value."""
    lines = stack.get("/metrics", token=None).text.splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def stream(stack: Stack, kind: str) -> list[tuple[str, dict[str, str]]]:
    entries = stack.client().xrange(f"ml_features:{kind}")
    return [(mid.decode(), {k.decode(): v.decode() for k, v in fields.items()}) for mid, fields in entries]


def test_valid_records_are_published_once_per_key(stack: Stack) -> None:
    one = stack.post("events", EVENT)
    assert one.status_code == 202, one.text
    [accepted] = one.json()["accepted"]
    assert accepted["id"] == "evt_rt_1" and not accepted["duplicate"] and one.json()["rejected"] == []

    # the same event again, alone and in a batch: answered with its first message id, not published again
    again = stack.post("events", [EVENT, {**EVENT, "event_id": "evt_rt_2"}])
    assert again.status_code == 202, again.text
    assert [(a["id"], a["message_id"], a["duplicate"]) for a in again.json()["accepted"]][0] == (
        "evt_rt_1",
        accepted["message_id"],
        True,
    )
    assert [fields["key"] for _, fields in stream(stack, "events")] == ["evt_rt_1", "evt_rt_2"]
    # the record travels as the contract's columns, as text (properties as JSON text)
    record = json.loads(stream(stack, "events")[0][1]["record"])
    assert record["properties"] == '{"page":"/home"}' and record["user_id"] == "1"

    # a transaction is versioned by updated_at: a new version is a new record, the same version
    # written another way (Z or +00:00) is not
    first = stack.post("transactions", TRANSACTION)
    same_version = stack.post("transactions", {**TRANSACTION, "updated_at": "2026-03-01 10:00:00+00:00"})
    new_version = stack.post(
        "transactions", {**TRANSACTION, "status": "refunded", "updated_at": "2026-03-02T09:00:00Z"}
    )
    assert [r.status_code for r in (first, same_version, new_version)] == [202, 202, 202]
    assert [r.json()["accepted"][0]["duplicate"] for r in (first, same_version, new_version)] == [False, True, False]
    assert len(stream(stack, "transactions")) == 2
    assert json.loads(stream(stack, "transactions")[0][1]["record"])["amount"] == "12.5"


def test_invalid_records_are_answered_422_with_reasons_and_kept_as_dead_letters(stack: Stack) -> None:
    bad = {**TRANSACTION, "transaction_id": "rt_bad", "amount": "-3", "created_at": "31/02/2026"}
    answer = stack.post("transactions", [TRANSACTION, bad, {"transaction_id": "rt_x", "colour": "red"}])
    assert answer.status_code == 422, answer.text
    body = answer.json()
    # the valid record of the batch is published all the same
    assert [a["id"] for a in body["accepted"]] == ["rt_1"]
    first, second = body["rejected"]
    assert (first["index"], first["id"]) == (1, "rt_bad")
    assert [(p["field"], p["rule"], p["reason"]) for p in first["problems"]] == [
        ("created_at", "unparseable_timestamp", "created_at '31/02/2026' is not a timestamp"),
        ("amount", "negative_amount", "amount -3 is negative"),
    ]
    assert ("colour", "malformed_record", "colour is not a column of the contract") in [
        (p["field"], p["rule"], p["reason"]) for p in second["problems"]
    ]
    # a body that is not JSON is a dead letter too
    garbage = stack.post("events", content=b"{not json")
    assert garbage.status_code == 422 and garbage.json()["rejected"][0]["problems"][0]["rule"] == "malformed_record"

    letters = stream(stack, "dead_letters")
    assert [mid for mid, _ in letters] == [
        first["dead_letter_id"],
        second["dead_letter_id"],
        garbage.json()["rejected"][0]["dead_letter_id"],
    ]
    kept = letters[0][1]
    assert kept["kind"] == "transactions" and json.loads(kept["record"]) == bad
    assert [p["rule"] for p in json.loads(kept["problems"])] == ["unparseable_timestamp", "negative_amount"]
    assert letters[2][1]["record"] == "{not json" and letters[2][1]["kind"] == "events"
    assert len(stream(stack, "transactions")) == 1


def test_a_bearer_token_is_required_and_never_logged(stack: Stack) -> None:
    for token in (None, "wrong", TEST_TOKEN + "x"):
        answer = stack.post("events", EVENT, token=token)
        assert answer.status_code == 401, (token, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
    assert httpx.post(f"{stack.url}/events", json=EVENT, headers={"Authorization": TEST_TOKEN}).status_code == 401
    assert stream(stack, "events") == [] and stream(stack, "dead_letters") == []
    assert stack.get("/healthz", token=None).json() == {"status": "ok", "redis": "ok"}
    assert stack.post("events", EVENT).status_code == 202
    assert TEST_TOKEN not in (stack.data_dir / "service.log").read_text()


def test_bodies_over_the_size_limit_are_refused(stack: Stack) -> None:
    big = [{**EVENT, "event_id": f"evt_{i}", "properties": {"text": "x" * 1000}} for i in range(25)]
    answer = stack.post("events", big)
    assert answer.status_code == 413 and "20,000 bytes" in answer.json()["detail"]

    # no Content-Length (chunked): counted as it streams in
    def chunks() -> Iterator[bytes]:
        yield json.dumps(big).encode()

    chunked = httpx.post(f"{stack.url}/events", content=chunks(), headers=stack.headers())
    assert chunked.status_code == 413
    many = stack.post("events", [{"event_id": f"e{i}"} for i in range(51)])
    assert many.status_code == 413 and "at most 50" in many.json()["detail"]
    assert stream(stack, "events") == [] and stream(stack, "dead_letters") == []
    # at the limit, accepted
    assert stack.post("events", [{**EVENT, "event_id": f"e{i}"} for i in range(50)]).status_code == 202


def test_metrics_count_requests_rejects_latency_and_the_backlog(stack: Stack) -> None:
    before = metrics(stack)
    stack.post("events", EVENT)
    stack.post("events", [EVENT, {**EVENT, "event_id": None}])
    stack.post("events", EVENT, token=None)
    stack.post("transactions", {**TRANSACTION, "amount": "N/A"})
    after = metrics(stack)
    counted = {name: after[name] - before.get(name, 0.0) for name in after if after[name] != before.get(name, 0.0)}
    assert counted['ml_features_realtime_requests_total{route="/events",status="202"}'] == 1
    assert counted['ml_features_realtime_requests_total{route="/events",status="422"}'] == 1
    assert counted['ml_features_realtime_requests_total{route="/events",status="401"}'] == 1
    assert counted['ml_features_realtime_rejects_total{kind="events",rule="missing_key"}'] == 1
    assert counted['ml_features_realtime_rejects_total{kind="transactions",rule="non_numeric_amount"}'] == 1
    assert counted['ml_features_realtime_records_total{kind="events",outcome="duplicate"}'] == 1
    assert counted['ml_features_realtime_request_seconds_count{route="/events"}'] == 3
    assert 0 < counted['ml_features_realtime_request_seconds_sum{route="/events"}'] < 30
    # no consumer has read anything: the backlog is all there
    assert after['ml_features_realtime_stream_length{stream="events"}'] == 1
    assert after['ml_features_realtime_consumer_lag{stream="events"}'] == 1
    assert after['ml_features_realtime_consumer_lag{stream="dead_letters"}'] == 2
    assert after['ml_features_realtime_consumer_pending{stream="events"}'] == 0


def test_streamed_rows_reach_the_features_once_and_rejects_the_quarantine(warehouse_copy: Warehouse) -> None:
    """Through the consumer and a real incremental dbt build on the built demo warehouse: accepted
    transactions are in fct_transaction_features once (a version sent twice, a newer version, a
    redelivery-proof load), their events count, dead letters are quarantine rows with the reasons,
    and the row reconciliation accounts for every raw row of the stream."""
    stack = start_stack(warehouse_copy.data_dir)
    try:

        def transaction(number: int, **changes: str) -> dict[str, str]:
            time = f"2026-08-31T10:0{number}:00Z"
            record = {**TRANSACTION, "transaction_id": f"rt_{number}", "user_id": "140"}
            return record | {"amount": "10.5", "created_at": time, "updated_at": time} | changes

        # a late one too, dated days before the last built day
        late = transaction(3, created_at="2026-08-20T10:03:00Z", updated_at="2026-08-20T10:03:00Z")
        assert stack.post("transactions", [transaction(1), transaction(2), late]).status_code == 202
        assert stack.post("transactions", transaction(1)).json()["accepted"][0]["duplicate"]
        refunded = transaction(2, status="refunded", updated_at="2026-09-01T00:00:00Z")
        # most of the stream's transactions refused at the door: their senders had the 422, so the
        # build still publishes (they are quarantine rows, left out of the quarantined share)
        refused = [transaction(number, amount=f"-{number}") for number in range(4, 9)]
        assert stack.post("transactions", [refunded, *refused]).status_code == 422
        events = [
            {**EVENT, "event_id": f"rt_e{i}", "user_id": "140", "occurred_at": "2026-08-31T09:50:00Z"} for i in (1, 2)
        ]
        assert stack.post("events", [*events, {"event_id": "rt_e3", "user_id": "140"}]).status_code == 422
        consumer = stack.start_consumer()
        stack.wait_consumed(consumer)
    finally:
        stack.close()

    # a scheduled run rebuilds from the earliest day the stream's loads since the last publish can change
    with duckdb.connect(str(warehouse_copy.duckdb_path), read_only=True) as connection:
        days = first_days(connection, last_publish_time(connection))
    assert (days.affected, days.loaded) == (dt.date(2026, 8, 20), dt.date(2026, 8, 20))
    build = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert build.success, build.failures
    features = warehouse_copy.query(
        "select transaction_id, count(*), min(session_events_before_txn) from marts.fct_transaction_features"
        " where transaction_id like 'rt_%' group by 1 order by 1"
    )
    assert features == [("rt_1", 1, 2), ("rt_2", 1, 2), ("rt_3", 1, 0)]
    assert warehouse_copy.query(
        "select status, source_table, rows_in_raw from intermediate.int_transactions_validated"
        " where transaction_id = 'rt_2'"
    ) == [("refunded", "stream.transactions", 2)]
    assert warehouse_copy.query("select status from monitoring.publish_log order by logged_at desc limit 1") == [
        ("published",)
    ]
    quarantined = warehouse_copy.query(
        "select source_table, record_key, rejection_rule, rejection_reason, rejected_by"
        " from intermediate.int_quarantined_rows where source_table like 'stream.%' order by 1, 2"
    )
    assert quarantined == [
        (
            "stream.events",
            "rt_e3",
            "unparseable_timestamp",
            "occurred_at is missing or not a timestamp",
            "ingestion_service",
        ),
        *[
            (
                "stream.transactions",
                f"rt_{number}",
                "negative_amount",
                f"amount -{number} is negative",
                "ingestion_service",
            )
            for number in range(4, 9)
        ],
    ]
    reconciled = warehouse_copy.query(
        "select source_table, sum(raw_rows), sum(valid_rows), sum(quarantined_rows), sum(duplicates_removed),"
        " sum(unaccounted_rows) from monitoring.row_reconciliation where source_table like 'stream.%'"
        " group by 1 order by 1"
    )
    assert reconciled == [("stream.events", 3, 2, 1, 0, 0), ("stream.transactions", 9, 3, 5, 1, 0)]
    # the run summary counts a refused record among the raw rows of the table it was sent to
    with duckdb.connect(str(warehouse_copy.duckdb_path), read_only=True) as connection:
        summary = {
            entry["table"]: (entry["quarantined"], entry["raw_rows"]) for entry in quarantine_by_table(connection)
        }
    assert summary["stream.transactions"] == (5, 9) and summary["stream.events"] == (1, 3)


def test_the_one_command_starts_the_stack_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    """`python -m realtime`: Redis, the service, the consumer and the store's sync; the URLs and where the
    token is (never the token); a POST lands in raw; SIGINT (Ctrl-C) stops every child."""
    port, redis_port = free_port(), free_port()
    environment = stack_environment(
        tmp_path / "data", ML_FEATURES_REALTIME_PORT=str(port), ML_FEATURES_REALTIME_REDIS_PORT=str(redis_port)
    )
    del environment["ML_FEATURES_REALTIME_TOKEN"]  # made on the first start, kept in the data folder
    command = subprocess.Popen(
        [sys.executable, "-m", "realtime"], cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = []
        for line in command.stdout:
            lines.append(line)
            if "Ctrl-C stops all" in line:
                break
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}" in banner and f"redis://127.0.0.1:{redis_port}" in banner, banner
        token_file = tmp_path / "data" / "realtime" / "token"
        assert str(token_file) in banner and oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()
        assert token not in banner
        answer = httpx.post(
            f"http://127.0.0.1:{port}/events", json=EVENT, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(duckdb.Error):
                with duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True) as connection:
                    if connection.sql("select event_id from raw_stream.events").fetchall() == [("evt_rt_1",)]:
                        break
            time.sleep(0.5)
        else:
            raise AssertionError("the POSTed event did not reach raw_stream.events")
        children = descendants(command.pid)
        assert len(children) >= 4, children  # redis-server, uvicorn, the consumer, the sync
    finally:
        command.send_signal(signal.SIGINT)
        rest, _ = command.communicate(timeout=60)
    assert command.returncode == 0 and rest.rstrip().endswith("realtime: stopped"), rest
    for stopped in (port, redis_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", stopped)) != 0, stopped
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], children


def test_without_redis_the_service_answers_503_not_a_traceback(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "data")
    try:
        stack.redis_server.stop()
        answer = stack.post("events", EVENT)
        assert answer.status_code == 503 and "send it again" in answer.json()["detail"], answer.text
        assert stack.get("/healthz", token=None).status_code == 503
        assert "Traceback" not in (stack.data_dir / "service.log").read_text()
    finally:
        stack.close()
