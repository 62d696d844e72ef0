"""The consumer: micro-batches from the broker's consumer group -> the warehouse (dlt) -> the online
store -> acknowledged.

    python -m realtime.consumer        (started by `python -m realtime`)

A micro-batch is ML_FEATURES_REALTIME_BATCH_RECORDS messages, or what came within
ML_FEATURES_REALTIME_BATCH_MILLISECONDS of the first. For each one:
  1. the warehouse file is opened (DuckDB has one writer: while a dbt build holds it, the consumer
     waits, retrying, and its messages stay pending), and held until the load is recorded, so the
     load's id is newer than every load a finished build read;
  2. a package a killed consumer left is loaded first (extract/load.py finish_interrupted, with the
     resumable DuckDB jobs: its rows land once); the messages whose id is already in raw (loaded
     by a consumer killed before it acknowledged) are not loaded again;
  3. dlt loads the rest into `raw_stream.transactions`, `.events`, `.dead_letters` (pipeline
     `ml_features_stream`): the contract's columns as text, plus `_stream_message_id` (lineage);
  4. after the load is recorded: `realtime.online_store.apply_batch` (idempotent) with the batch's
     transactions and events;
  5. XACK, and the streams' entries older than the retention that are acknowledged are trimmed.
     Killed anywhere before, the messages are delivered again: this consumer takes its own
     pending messages back when it restarts, another takes them over after the claim idle time.
"""

import datetime as dt
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dlt
import duckdb
import pyarrow as pa
import redis
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.exceptions import PipelineStepFailed
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from extract.arrow_rows import random_prefix, with_row_ids
from extract.load import DUCKDB_PARQUET, duckdb_path, duckdb_settings, finish_interrupted, pipelines_dir
from extract.resumable_duckdb import resumable_duckdb
from realtime.broker import Broker, Message, RedisStreamsBroker, connect
from realtime.contract import COLUMNS, record_id
from realtime.settings import SettingError, Settings

logger = logging.getLogger("realtime.consumer")
PIPELINE = "ml_features_stream"
DATASET = "raw_stream"
MESSAGE_ID = "_stream_message_id"
DEAD_LETTER_COLUMNS = ("kind", "record_key", "record", "problems", "rejection_rule", "rejection_reason", "received_at")
TABLE_COLUMNS = {**COLUMNS, "dead_letters": DEAD_LETTER_COLUMNS}
CLOCK_MARGIN_SECONDS = 3600


@dataclass
class Batch:
    """The messages of one micro-batch and their rows, per raw table."""

    messages: list[Message] = field(default_factory=list)
    rows: dict[str, list[dict[str, str | None]]] = field(default_factory=lambda: {t: [] for t in TABLE_COLUMNS})


def rows_of(messages: list[Message]) -> Batch:
    """The raw rows of `messages`: a record's contract columns (text), a dead letter's fields with its
    first rule and every reason; each with its message id."""
    batch = Batch(messages=messages)
    for message in messages:
        if message.stream == "dead_letters":
            problems = json.loads(message.fields.get("problems") or "[]")
            row = {name: message.fields.get(name) for name in ("kind", "record", "problems", "received_at")}
            try:
                row["record_key"] = record_id(message.fields.get("kind", ""), json.loads(row["record"] or "null"))
            except ValueError:  # the body as sent, not JSON
                row["record_key"] = None
            row["rejection_rule"] = problems[0]["rule"] if problems else "malformed_record"
            row["rejection_reason"] = "; ".join(problem["reason"] for problem in problems) or "no reason given"
        else:
            record = json.loads(message.fields["record"])
            row = {column: record.get(column) for column in COLUMNS[message.stream]}
        batch.rows[message.stream].append({**row, MESSAGE_ID: message.id})
    return batch


def arrow_table(table: str, rows: list[dict[str, str | None]]) -> pa.Table:
    columns = (*TABLE_COLUMNS[table], MESSAGE_ID)
    arrays = {column: pa.array([row[column] for row in rows], pa.string()) for column in columns}
    return with_row_ids(pa.table(arrays), random_prefix())


def is_locked(error: BaseException) -> bool:
    """DuckDB's error when another process holds the warehouse file."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


@contextmanager
def warehouse(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse file, opened for writing: retried while another process (a dbt build) holds it."""
    path = Path(duckdb_path())
    path.parent.mkdir(parents=True, exist_ok=True)

    @retry(
        retry=retry_if_exception(is_locked),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(settings.lock_wait_seconds),
        reraise=True,
        before_sleep=lambda state: logger.info("the warehouse is in use (a dbt build?): waiting"),
    )
    def open_file() -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(path), config=duckdb_settings())

    connection = open_file()
    try:
        yield connection
    finally:
        connection.close()


def make_pipeline(connection: duckdb.DuckDBPyConnection) -> dlt.Pipeline:
    """The stream's dlt pipeline, writing `raw_stream` through `connection` (resumable jobs)."""
    destination = resumable_duckdb(DuckDbCredentials(connection), parquet_format=DUCKDB_PARQUET)
    return dlt.pipeline(
        pipeline_name=PIPELINE, destination=destination, dataset_name=DATASET, pipelines_dir=str(pipelines_dir())
    )


def loaded_message_ids(connection: duckdb.DuckDBPyConnection, table: str, ids: list[str]) -> set[str]:
    """Which of `ids` `raw_stream.<table>` already holds.

    Only the loads since the oldest message was published are read (less CLOCK_MARGIN_SECONDS for the
    clocks of Redis and of this machine): a message is loaded after it was published, and the load id
    is the unix time (DuckDB skips the older row groups of the append-only table by their min/max)."""
    exists = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [DATASET, table]
    ).fetchone()[0]
    if not exists or not ids:
        return set()
    oldest_seconds = min(int(message_id.split("-")[0]) for message_id in ids) // 1000 - CLOCK_MARGIN_SECONDS
    found = connection.execute(
        f"select distinct {MESSAGE_ID} from {DATASET}.{table} "
        f"where _dlt_load_id >= ? and {MESSAGE_ID} in (select unnest(?))",
        [str(oldest_seconds), ids],
    ).fetchall()
    return {message_id for (message_id,) in found}


def load(batch: Batch, settings: Settings) -> dict[str, int]:
    """Load the rows of `batch` raw does not hold yet; the rows loaded per table."""
    with warehouse(settings) as connection:
        pipeline = make_pipeline(connection)
        finish_interrupted(pipeline)
        resources = []
        loaded: dict[str, int] = {}
        for table, rows in batch.rows.items():
            done = loaded_message_ids(connection, table, [row[MESSAGE_ID] for row in rows])
            new_rows = [row for row in rows if row[MESSAGE_ID] not in done]
            if new_rows:
                resources.append(dlt.resource(arrow_table(table, new_rows), name=table, write_disposition="append"))
                loaded[table] = len(new_rows)
        if resources:
            pipeline.run(resources)
        return loaded


def apply_to_online_store(client: redis.Redis, batch: Batch) -> None:
    """The batch's records (the contract's columns, text) to the online store; idempotent."""
    from realtime.online_store import apply_batch

    def records(table: str) -> list[dict[str, str | None]]:
        return [{column: row[column] for column in COLUMNS[table]} for row in batch.rows[table]]

    apply_batch(client, records("transactions"), records("events"))


def collect(broker: Broker, settings: Settings, stopping: "Stopping") -> list[Message]:
    """A micro-batch: this consumer's own pending messages first (a restart), then those another left
    idle, then new ones until batch_records or batch_milliseconds after the first."""
    limit = settings.batch_records
    messages = broker.read(settings.consumer, limit, 0, own_pending=True)
    if len(messages) < limit:
        messages += broker.reclaim(settings.consumer, settings.claim_idle_milliseconds, limit - len(messages))
    deadline = None
    while len(messages) < limit and not stopping.requested:
        now = time.monotonic()
        if messages and deadline is None:
            deadline = now + settings.batch_milliseconds / 1000
        wait_ms = 200 if deadline is None else int((deadline - now) * 1000)
        if wait_ms <= 0:
            break
        messages += broker.read(settings.consumer, limit - len(messages), min(wait_ms, 200))
    # the same message can come back twice in one batch (own pending, then reclaimed): once is enough
    unique = {(message.stream, message.id): message for message in messages}
    return list(unique.values())


def process(broker: Broker, client: redis.Redis, settings: Settings, messages: list[Message]) -> dict[str, int]:
    """Load, apply to the online store, acknowledge: in that order."""
    batch = rows_of(messages)
    loaded = load(batch, settings)
    apply_to_online_store(client, batch)
    broker.ack(messages)
    broker.trim(int(time.time() * 1000) - settings.retention_hours * 3_600_000)
    return loaded


class Stopping:
    """Set by SIGTERM/SIGINT: the consumer finishes the batch in hand and stops."""

    def __init__(self) -> None:
        self.requested = False

    def request(self, signum: int, _frame: object) -> None:
        self.requested = True


def run(settings: Settings) -> int:
    if not settings.redis_url:
        print(
            "consumer: ML_FEATURES_REDIS_URL is not set: `python -m realtime` starts Redis and sets it", file=sys.stderr
        )
        return 2
    stopping = Stopping()
    signal.signal(signal.SIGTERM, stopping.request)
    signal.signal(signal.SIGINT, stopping.request)
    client = connect(settings.redis_url)
    broker = RedisStreamsBroker(client, settings)
    broker.ensure_group()
    print(f"consumer: {settings.consumer} of group {settings.group} -> {duckdb_path()} ({DATASET})", flush=True)
    while not stopping.requested:
        messages = collect(broker, settings, stopping)
        if not messages:
            continue
        loaded = process(broker, client, settings, messages)
        counts = ", ".join(f"{table} {count}" for table, count in sorted(loaded.items())) or "nothing new"
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        print(f"consumer: {stamp} {len(messages)} message(s) -> raw: {counts}; acknowledged", flush=True)
    print("consumer: stopped", flush=True)
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="consumer: %(message)s")
    try:
        return run(Settings.from_env())
    except (redis.RedisError, duckdb.Error, PipelineStepFailed, OSError, SettingError) as error:
        # the batch in hand stays pending: the next start (or another consumer) takes it back
        print(f"consumer: stopped, its messages stay pending: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
