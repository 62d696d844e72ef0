"""The broker between the service and the consumer: Redis Streams with a consumer group, at least once.

The service publishes a valid record to `<prefix>:transactions` or `<prefix>:events` (once per
idempotency key: a Lua script checks the key, XADDs and remembers the message id atomically, so a
record POSTed again is answered with its first message id and not published again) and a rejected one
to `<prefix>:dead_letters`. The consumer reads them in its group (XREADGROUP), acknowledges a message
(XACK) only after its micro-batch is in the warehouse, takes its own pending messages back when it
restarts, and takes over (XAUTOCLAIM) those another consumer left unacknowledged for longer than the
claim idle time. `Broker` is the whole interface the service and consumer use: a Kafka broker (topics
for the streams, the consumer group's committed offsets for the acknowledgements) is a class with these
methods; docs/realtime.md describes it, and it is not shipped nor tested here.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import redis

from realtime.settings import Settings

STREAMS = ("transactions", "events", "dead_letters")
# KEYS: the stream, the idempotency key; ARGV: the key's lifetime (ms), then the message's fields.
# Returns [message id, 1 when published now / 0 when the key was published before]
PUBLISH_ONCE = """
local seen = redis.call('GET', KEYS[2])
if seen then return {seen, 0} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {id, 1}
"""


@dataclass(frozen=True)
class Message:
    """One message read from a stream: which stream (transactions, events, dead_letters), its id, its fields."""

    stream: str
    id: str
    fields: dict[str, str]


class Broker(Protocol):
    def publish(self, kind: str, records: list[tuple[str, dict]]) -> list[tuple[str, bool]]:
        """Publish (idempotency key, record) pairs to `kind`; (message id, published now) for each."""
        ...

    def dead_letter(self, letters: list[dict[str, str]]) -> list[str]:
        """Publish rejected records (fields kind, record: the JSON sent, problems: JSON, received_at); their ids."""
        ...

    def ensure_group(self) -> None: ...

    def read(self, consumer: str, count: int, block_ms: int, own_pending: bool = False) -> list[Message]:
        """New messages for `consumer` (or, with `own_pending`, those it was given and did not acknowledge)."""
        ...

    def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        """Messages other consumers left unacknowledged for `min_idle_ms`, now `consumer`'s."""
        ...

    def ack(self, messages: Iterable[Message]) -> None: ...

    def backlog(self) -> dict[str, tuple[int, int | None, int]]:
        """Per stream: (length, lag: entries not yet delivered to the group, pending: delivered, not acknowledged)."""
        ...

    def trim(self, older_than_ms: int) -> int:
        """Drop the entries published before `older_than_ms` (unix ms) that were delivered and acknowledged."""
        ...


class RedisStreamsBroker:
    """Broker on Redis Streams (redis-server 5+; the lag needs 7+)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.group = settings.group
        self.publish_once = client.register_script(PUBLISH_ONCE)
        self.names = {settings.stream(kind): kind for kind in STREAMS}

    def publish(self, kind: str, records: list[tuple[str, dict]]) -> list[tuple[str, bool]]:
        stream = self.settings.stream(kind)
        lifetime = str(self.settings.idempotency_seconds * 1000)
        pipe = self.client.pipeline(transaction=False)
        for key, record in records:
            fields = ["key", key, "record", json.dumps(record, separators=(",", ":"))]
            self.publish_once(
                keys=[stream, self.settings.idempotency_key(kind, key)], args=[lifetime, *fields], client=pipe
            )
        return [(decode(message_id), bool(new)) for message_id, new in pipe.execute()]

    def dead_letter(self, letters: list[dict[str, str]]) -> list[str]:
        stream = self.settings.stream("dead_letters")
        pipe = self.client.pipeline(transaction=False)
        for letter in letters:
            pipe.xadd(stream, letter)
        return [decode(message_id) for message_id in pipe.execute()]

    def ensure_group(self) -> None:
        for stream in self.names:
            try:
                self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    def read(self, consumer: str, count: int, block_ms: int, own_pending: bool = False) -> list[Message]:
        start = "0" if own_pending else ">"
        answer = self.client.xreadgroup(
            self.group, consumer, dict.fromkeys(self.names, start), count=count, block=None if own_pending else block_ms
        )
        return [
            Message(self.names[decode(stream)], decode(message_id), decode_fields(fields))
            for stream, entries in answer or []
            for message_id, fields in entries
            if fields  # a pending entry whose message was trimmed has no fields
        ]

    def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        messages = []
        for stream, kind in self.names.items():
            start = "0-0"
            while True:
                next_start, entries, *_ = self.client.xautoclaim(
                    stream, self.group, consumer, min_idle_ms, start_id=start, count=count
                )
                messages += [Message(kind, decode(mid), decode_fields(fields)) for mid, fields in entries if fields]
                start = decode(next_start)
                if start == "0-0" or len(messages) >= count:
                    break
        return messages

    def ack(self, messages: Iterable[Message]) -> None:
        by_stream: dict[str, list[str]] = {}
        for message in messages:
            by_stream.setdefault(self.settings.stream(message.stream), []).append(message.id)
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        pipe.execute()

    def backlog(self) -> dict[str, tuple[int, int | None, int]]:
        result = {}
        for stream, kind in self.names.items():
            length = self.client.xlen(stream)
            lag, pending = None, 0
            try:
                groups = self.client.xinfo_groups(stream)
            except redis.ResponseError:  # no such stream yet
                groups = []
            for group in groups:
                if decode(group["name"]) == self.group:
                    lag, pending = group.get("lag"), int(group.get("pending") or 0)
                    lag = int(lag) if lag is not None else None
            result[kind] = (length, lag, pending)
        return result

    def trim(self, older_than_ms: int) -> int:
        removed = 0
        for stream in self.names:
            keep_from = [(older_than_ms, 0)]
            for group in self.client.xinfo_groups(stream):
                if decode(group["name"]) == self.group:
                    delivered = parse_id(decode(group["last-delivered-id"]))
                    keep_from.append((delivered[0], delivered[1] + 1))  # what was never delivered stays
            pending = self.client.xpending(stream, self.group)
            if pending and pending.get("pending"):
                keep_from.append(parse_id(decode(pending["min"])))  # what was not acknowledged stays
            oldest = min(keep_from)
            removed += self.client.xtrim(stream, minid=f"{oldest[0]}-{oldest[1]}", approximate=False)
        return removed


def parse_id(message_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = message_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_fields(fields: dict) -> dict[str, str]:
    return {decode(name): decode(value) for name, value in fields.items()}


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
