"""Training/serving skew check: replay one day through the real-time path and compare with the batch.

    python -m realtime.skew --date D [--service URL] [--redis-url URL]

With a warehouse built through day D by the batch pipeline (its published gold holds day D):
  1. sync the online store from the published gold as of the day before (history strictly before D);
  2. replay day D's raw records (every transaction created on D and every delivery of an event that
     occurred on D, as the sources delivered them: duplicates, bad values and all) through the
     service (POST, answered 202 or 422) when --service is given, else into the store directly with
     apply_batch (what the consumer calls);
  3. compare, for every transaction of D in fct_transaction_features, the online features at its
     timestamp with the batch row, column by column, equal to 1e-9; a transaction the store holds as
     valid on D but the batch does not is a mismatch too.

The label columns (is_fraud, is_label_matured) are not compared: a chargeback arrives weeks after the
transaction, so the label cannot be known online at its time. Exit 0 with 0 mismatches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import redis

from realtime import online_store
from realtime.online_store import EVENT_FIELDS, LABEL_COLUMNS, TRANSACTION_FEATURES, TRANSACTION_FIELDS
from realtime.settings import Settings, token_file

TOLERANCE = 1e-9


@dataclass
class SkewReport:
    day: dt.date
    first_day: dt.date | None = None
    compared: int = 0
    replayed_transactions: int = 0
    replayed_events: int = 0
    mismatches: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def total_mismatches(self) -> int:
        return sum(self.mismatches.values())

    def days_text(self) -> str:
        return str(self.day) if self.first_day in (None, self.day) else f"{self.first_day}..{self.day}"

    def lines(self) -> list[str]:
        columns = [c for c in TRANSACTION_FEATURES]
        out = [
            f"[skew] {self.days_text()}: replayed {self.replayed_transactions:,} transaction records and "
            f"{self.replayed_events:,} event records; compared {self.compared:,} transactions x "
            f"{len(columns)} feature columns (tolerance {TOLERANCE:g})",
            f"[skew] not compared: {', '.join(LABEL_COLUMNS)} (the label: chargebacks arrive weeks later, "
            "unknown online at the transaction's time)",
        ]
        for name in [*columns, "missing_online", "extra_online"]:
            out.append(f"[skew]   {name:<28} {self.mismatches.get(name, 0)} mismatches")
        out += [f"[skew]   e.g. {example}" for example in self.examples[:10]]
        out.append(f"[skew] {'PASS' if self.total_mismatches == 0 else 'FAIL'}: {self.total_mismatches} mismatches")
        return out


def raw_text_columns(connection: duckdb.DuckDBPyConnection, table: str, fields: tuple[str, ...]) -> str:
    """Each contract column as the text the source gave (its dlt variant column where dlt put it there)."""
    schema, name = table.split(".")
    present = {
        column
        for (column,) in connection.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchall()
    }
    parts = []
    for column in fields:
        values = [f'cast("{c}" as varchar)' for c in (column, f"{column}__v_text") if c in present]
        parts.append(f"coalesce({', '.join(values) or 'null'}, null) as {column}")
    return ", ".join(parts)


def day_records(
    warehouse: Path, first_day: dt.date, day: dt.date
) -> tuple[list[dict[str, str | None]], list[dict[str, str | None]]]:
    """The raw transactions created and event deliveries that occurred on the days first_day..day, as
    text, in load order."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        connection.execute("set TimeZone = 'UTC'")
        on_day = "cast(make_timestamp(epoch_us(try_cast({column} as timestamptz))) as date) between ? and ?"
        transactions = connection.execute(
            f"select * from (select {raw_text_columns(connection, 'raw_app.transactions', TRANSACTION_FIELDS)}, "
            "_dlt_load_id, _dlt_id from raw_app.transactions) where "
            + on_day.format(column="created_at")
            + " order by _dlt_load_id, _dlt_id",
            [first_day, day],
        ).fetchall()
        events = connection.execute(
            f"select * from (select {raw_text_columns(connection, 'raw_events.events', EVENT_FIELDS)}, "
            "_dlt_load_id, _batch_file, _dlt_id from raw_events.events) where "
            + on_day.format(column="occurred_at")
            + " order by _dlt_load_id, _batch_file, _dlt_id",
            [first_day, day],
        ).fetchall()
    return (
        [dict(zip(TRANSACTION_FIELDS, row[: len(TRANSACTION_FIELDS)], strict=True)) for row in transactions],
        [dict(zip(EVENT_FIELDS, row[: len(EVENT_FIELDS)], strict=True)) for row in events],
    )


def batch_rows(gold: Path, day: dt.date, first_day: dt.date | None = None) -> list[dict[str, Any]]:
    with duckdb.connect(str(gold), read_only=True) as connection:
        relation = connection.execute(
            "select * from marts.fct_transaction_features where transaction_date between ? and ? order by created_at",
            [first_day or day, day],
        )
        names = [d[0] for d in relation.description]
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def post(url: str, token: str | None, kind: str, records: list[dict[str, str | None]]) -> set[str]:
    """POST records to the service in chunks; the ids it accepted. 202 (accepted) and 422 (some rejected,
    kept as dead letters) are both answers a replay of raw data expects."""
    accepted: set[str] = set()
    for start in range(0, len(records), 500):
        body = json.dumps(records[start : start + 500]).encode()
        request = urllib.request.Request(f"{url.rstrip('/')}/{kind}", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code != 422:
                raise
            answer = json.loads(error.read())
        accepted |= {item["id"] for item in answer["accepted"]}
    return accepted


def replay(
    client: redis.Redis,
    transactions: list[dict[str, str | None]],
    events: list[dict[str, str | None]],
    service: str | None,
    token: str | None,
    wait_seconds: float = 120.0,
) -> None:
    """Send the day's records through the service, then wait until the consumer applied every accepted
    one to the store; without a service, apply them to the store directly (what the consumer calls)."""
    if service is None:
        for start in range(0, len(events), 500):
            online_store.apply_batch(client, [], events[start : start + 500])
        for start in range(0, len(transactions), 500):
            online_store.apply_batch(client, transactions[start : start + 500], [])
        return
    accepted_events = post(service, token, "events", events)
    accepted_transactions = post(service, token, "transactions", transactions)
    wait_until_applied(client, accepted_transactions, accepted_events, wait_seconds)


def wait_until_applied(client: redis.Redis, transactions: set[str], events: set[str], seconds: float) -> None:
    """Until every accepted record is in the store (txv / evs hold every id applied)."""
    deadline = time.monotonic() + seconds
    while True:
        txn = (
            sum(v is not None for v in client.hmget(online_store.PREFIX + "txv", list(transactions)))
            if transactions
            else 0
        )
        evt = sum(v is not None for v in client.hmget(online_store.PREFIX + "evs", list(events))) if events else 0
        if txn >= len(transactions) and evt >= len(events):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"after {seconds:.0f}s the store holds {txn} of {len(transactions)} transactions and {evt} of "
                f"{len(events)} events the service accepted (is the consumer running?)"
            )
        time.sleep(0.1)


def same(batch: Any, online: Any) -> bool:
    if batch is None or online is None:
        return batch is None and online is None
    if isinstance(batch, bool) or isinstance(online, bool):
        return bool(batch) == bool(online) and isinstance(batch, bool) == isinstance(online, bool)
    if isinstance(batch, dt.datetime | dt.date):
        return str(batch) == str(online)
    if isinstance(batch, str):
        return batch == online
    return math.isclose(float(batch), float(online), rel_tol=0.0, abs_tol=TOLERANCE)


def compare(client: redis.Redis, rows: list[dict[str, Any]], day: dt.date, report: SkewReport) -> None:
    """Each batch row against the store's features of its transaction; then the transactions the store
    holds as valid on report.first_day..day that the batch does not have."""
    for row in rows:
        report.compared += 1
        try:
            online = online_store.transaction_features(client, str(row["user_id"]), str(row["transaction_id"]))
        except (online_store.UnknownTransaction, online_store.UnknownUser) as error:
            report.mismatches["missing_online"] += 1
            report.examples.append(f"{row['transaction_id']}: {error}")
            continue
        for name in TRANSACTION_FEATURES:
            if not same(row[name], online[name]):
                report.mismatches[name] += 1
                report.examples.append(f"{row['transaction_id']} {name}: batch {row[name]!r}, online {online[name]!r}")
    batch_ids = {str(row["transaction_id"]) for row in rows}
    first_day = report.first_day or day
    for offset in range((day - first_day).days + 1):
        on = first_day + dt.timedelta(days=offset)
        for txn_id in sorted(set(online_store.stored_transactions(client, on)) - batch_ids):
            report.mismatches["extra_online"] += 1
            report.examples.append(f"{txn_id}: valid online on {on}, not in the batch")


def forget_published(client: redis.Redis) -> int:
    """Delete the service's idempotency keys, so records it published before are published again (a
    replay into a cleared store would otherwise be answered `duplicate` and never reach it); how many.
    Staging still keeps one row per record."""
    from realtime.settings import Settings

    pattern = Settings.from_env().idempotency_key("*", "*")
    keys = list(client.scan_iter(match=pattern, count=10_000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
    return len(keys)


def check(
    client: redis.Redis,
    day: dt.date,
    warehouse: Path,
    gold: Path,
    service: str | None = None,
    token: str | None = None,
    fresh: bool = False,
    days: int = 1,
) -> SkewReport:
    """Sync as of the first of `days` days ending on `day`, replay them, compare. `fresh`: the store's
    keys and the service's idempotency keys are deleted first."""
    first_day = day - dt.timedelta(days=days - 1)
    # first: a running consumer loads into the warehouse
    transactions, events = day_records(warehouse, first_day, day)
    if fresh:
        online_store.clear(client)
        forget_published(client)
    online_store.sync(client, gold, as_of=first_day)
    serves_from = json.loads(client.hget(online_store.PREFIX + "meta", "params"))["serves_from_us"]
    if serves_from is not None and online_store.microseconds(dt.datetime.combine(first_day, dt.time())) < serves_from:
        raise online_store.StoreError(
            f"{first_day} is before the online store's history (from {online_store.from_microseconds(serves_from)}): "
            "replay fewer days, or a day closer to the gold's last"
        )
    report = SkewReport(day, first_day, replayed_transactions=len(transactions), replayed_events=len(events))
    replay(client, transactions, events, service, token)
    compare(client, batch_rows(gold, day, first_day), day, report)
    return report


def service_token() -> str | None:
    """The service's bearer token: the setting (ML_FEATURES_REALTIME_TOKEN), else the stack's token file."""
    token = Settings.from_env().token
    if token is not None:
        return token.get_secret_value()
    return token_file().read_text().strip() if token_file().exists() else None


def main(argv: list[str] | None = None) -> int:
    from extract.load import duckdb_path
    from pipeline.warehouse.published import published_path

    parser = argparse.ArgumentParser(prog="python -m realtime.skew", description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", type=dt.date.fromisoformat, required=True, help="the day to replay, YYYY-MM-DD")
    parser.add_argument(
        "--service",
        default=None,
        help="the ingestion service's URL (default: apply directly); its bearer token is read from "
        "ML_FEATURES_REALTIME_TOKEN or the token file `python -m realtime` keeps, never the command line",
    )
    parser.add_argument("--days", type=int, default=1, help="replay this many days ending on --date (default 1)")
    parser.add_argument("--fresh", action="store_true", help="clear the store and the service's idempotency keys")
    parser.add_argument("--redis-url", default=None, help="default: ML_FEATURES_REDIS_URL or the stack's redis-server")
    args = parser.parse_args(argv)
    gold, warehouse = published_path(), Path(duckdb_path())
    if not gold.exists() or not warehouse.exists():
        print(f"[skew] no warehouse at {warehouse} or no published gold at {gold}: build through {args.date} first")
        return 2
    try:
        report = check(
            online_store.connect(args.redis_url),
            args.date,
            warehouse,
            gold,
            args.service,
            service_token() if args.service else None,
            args.fresh,
            args.days,
        )
    except (online_store.StoreError, redis.ConnectionError, TimeoutError) as error:
        print(f"[skew] {error}")
        return 2
    print("\n".join(report.lines()))
    return 0 if report.total_mismatches == 0 and report.compared > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
