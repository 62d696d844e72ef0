"""The online feature store: per-user state in Redis, the features of fct_transaction_features from it.

    python -m realtime.online_store sync [--as-of YYYY-MM-DD]   bootstrap/refresh from the published gold

Where the state comes from
    * `sync` reads the published gold file (pipeline/warehouse/published.py: published_path(), read-only, so it
      never blocks the pipeline): `preprocessing_parameters`, and the `online_*` gold models built for
      the store (models/marts/online/): users, their loyalty-tier history (users_snapshot), the known
      currencies and FX rate ranges, the valid transactions of the last 31 + reprocess_days days (and
      each user's latest before them) and the valid events of the last days. `--as-of D` loads only
      the history strictly before day D (the skew check replays day D itself).
    * the consumer calls `apply_batch` with every micro-batch of contract records (text values, as
      realtime/contract.py validated them) after its warehouse load committed.

How a record is decided (the rules of macros/cleaning/*.sql, one by one)
    * values are cast by DuckDB with the casts of staging (safe_to_key, safe_to_decimal,
      safe_to_timestamp), so a value parses online exactly as it does in the warehouse;
    * a transaction keeps its latest version: the greatest updated_at (a null one loses), a tie goes
      to the later arrival (the later load); each version is validated like validate_transactions
      (missing key, unparseable or future timestamp, amount out of range / not a number / negative,
      unknown currency, missing FX rate) and amount_usd = amount x the rate of the latest rate date
      <= its date (cast to numeric(28,6) by DuckDB, as the warehouse does). The unknown-user rule is
      applied when features are read: a user is known when the last sync brought it;
    * an event keeps its first delivery (first to arrive), valid with an id, a time and a user.

Redis keys (prefix `ml_features:online:`); every write is keyed by the record's id, so applying a
batch again changes nothing:
    meta                hash: params (preprocessing_parameters as JSON), published invocation, as_of
    users               hash: user_id -> JSON {signup_us, age, country, tiers [[from_us, to_us, tier]]}
    fx                  hash: currency -> JSON [[from_day, to_day, rate]] (days since 1970-01-01)
    txv                 hash: transaction_id -> its kept version ("updated\\tuser\\tvalid\\tJSON")
    tx:<user>           sorted set: the user's valid transactions, scored by created_at (microseconds)
    txa:<user>          hash: transaction_id -> "amount_usd\\tdevice_group"
    evs                 hash: event_id -> "user\\tmicroseconds" of its first delivery ("user\\t" invalid)
    ev:<user>           sorted set: the user's valid events, scored by occurred_at (microseconds)
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import math
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import redis
import yaml

from extract.app_database import CONTRACT_COLUMNS
from extract.contract import OPTIONAL_TABLES

PREFIX = "ml_features:online:"
DAY_US = 86_400_000_000
SESSION_US = 1_800_000_000  # 30 minutes: days_in_microseconds(30 / 1440)
EPOCH = dt.datetime(1970, 1, 1)
PROJECT_DIR = Path(__file__).resolve().parent.parent
TRANSACTION_FIELDS = CONTRACT_COLUMNS["transactions"]  # the raw contract's columns
EVENT_FIELDS = OPTIONAL_TABLES["events"]["events"]
# the feature columns of fct_transaction_features the store serves; is_fraud and is_label_matured are
# the label, which no one knows at the transaction's time (chargebacks arrive weeks later)
LABEL_COLUMNS = ("is_fraud", "is_label_matured")
USER_FEATURES = (
    "hour_of_day",
    "day_of_week",
    "is_weekend",
    "user_txn_count_1d",
    "user_txn_count_7d",
    "user_txn_count_30d",
    "user_amount_sum_7d",
    "user_amount_sum_30d",
    "user_amount_mean_30d",
    "seconds_since_prev_txn",
    "session_events_before_txn",
    "user_tenure_days",
    "age",
    "is_age_imputed",
    "country_us",
    "country_uk",
    "country_ca",
    "country_au",
    "country_other",
    "loyalty_tier",
)
TRANSACTION_FEATURES = (
    "transaction_id",
    "user_id",
    "created_at",
    "transaction_date",
    "amount_usd",
    "amount_usd_scaled",
    "is_amount_outlier",
    *USER_FEATURES[: USER_FEATURES.index("country_other") + 1],
    "device_mobile",
    "device_desktop",
    "device_tablet",
    "device_other",
    "loyalty_tier",
)


class StoreError(RuntimeError):
    """The store cannot be synced or read (no published gold, an old gold without the online models)."""


# ---------------------------------------------------------------------------------------------------
# decoding records with the warehouse's own casts (DuckDB, in process)

TRANSACTIONS_SQL = """
select
    nullif(trim(cast(transaction_id as varchar)), '') as transaction_id,
    nullif(trim(cast(user_id as varchar)), '') as user_id,
    coalesce(try_cast(amount as decimal(18, 6)), try_cast(amount as decimal(28, 6))) as amount,
    amount as raw_amount,
    try_cast(amount as double) is not null and lower(trim(amount)) not in ('nan', '+nan', '-nan') as amount_is_number,
    upper(trim(currency)) as currency,
    case when lower(trim(device_type)) in ('mobile', 'desktop', 'tablet') then lower(trim(device_type))
        else 'other' end as device_group,
    epoch_us(make_timestamp(epoch_us(try_cast(created_at as timestamptz)))) as created_us,
    epoch_us(make_timestamp(epoch_us(try_cast(updated_at as timestamptz)))) as updated_us,
    cast(make_timestamp(epoch_us(try_cast(created_at as timestamptz))) as date) - date '1970-01-01' as created_day
from batch
"""
AMOUNT_USD_SQL = "select cast(amount * rate as decimal(28, 6)) as amount_usd from batch"
EVENTS_SQL = """
select
    nullif(trim(cast(event_id as varchar)), '') as event_id,
    nullif(trim(cast(user_id as varchar)), '') as user_id,
    epoch_us(make_timestamp(epoch_us(try_cast(occurred_at as timestamptz)))) as occurred_us
from batch
"""

_duckdb_lock = threading.Lock()
_duckdb: duckdb.DuckDBPyConnection | None = None


def query(sql: str, batch: pa.Table) -> list[tuple]:
    """Run `sql` over `batch` in this process's in-memory DuckDB (UTC, as the warehouse's sessions)."""
    global _duckdb
    with _duckdb_lock:
        if _duckdb is None:
            _duckdb = duckdb.connect(":memory:")
            _duckdb.execute("set TimeZone = 'UTC'; set threads = 1")
        _duckdb.register("batch", batch)
        try:
            return _duckdb.execute(sql).fetchall()
        finally:
            _duckdb.unregister("batch")


def text_table(records: list[dict[str, str | None]], fields: tuple[str, ...]) -> pa.Table:
    return pa.table(
        {
            name: pa.array([None if r.get(name) is None else str(r.get(name)) for r in records], pa.string())
            for name in fields
        }
    )


# ---------------------------------------------------------------------------------------------------
# the settings the batch uses (dbt vars) and the state the sync keeps


@dataclass
class Vars:
    reporting_currency: str = "USD"
    max_clock_skew_minutes: int = 60
    reprocess_days: int = 3


def dbt_vars() -> Vars:
    """reporting_currency and max_clock_skew_minutes as dbt_project.yml sets them."""
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
    values = project.get("vars") or {}
    return Vars(
        str(values.get("reporting_currency") or "USD").strip().upper(),
        int(values.get("max_clock_skew_minutes", 60)),
        int(values.get("reprocess_days", 3)),
    )


class Fx:
    """Known currencies and their rate ranges, read from Redis once per batch."""

    def __init__(self, ranges: dict[str, list[list[Any]]], reporting_currency: str) -> None:
        self.ranges = {currency: sorted(r for r in found if r[0] is not None) for currency, found in ranges.items()}
        self.starts = {currency: [r[0] for r in found] for currency, found in self.ranges.items()}
        self.reporting = reporting_currency

    @classmethod
    def load(cls, client: redis.Redis) -> Fx:
        ranges = {k.decode(): json.loads(v) for k, v in client.hgetall(PREFIX + "fx").items()}
        reporting = client.hget(PREFIX + "meta", "reporting_currency")
        return cls(ranges, reporting.decode() if reporting else dbt_vars().reporting_currency)

    def known(self, currency: str | None) -> bool:
        return currency is not None and (currency == self.reporting or currency in self.ranges)

    def rate(self, currency: str, day: int) -> float | None:
        """The rate of `currency` on `day` (days since the epoch): that of the latest rate date <= day."""
        if currency == self.reporting:
            return 1.0
        index = bisect.bisect_right(self.starts.get(currency, []), day) - 1
        if index < 0:
            return None
        _start, end, rate = self.ranges[currency][index]
        return float(rate) if day < end else None


# ---------------------------------------------------------------------------------------------------
# writing: atomic, keyed by record id (Lua scripts run whole or not at all)

APPLY_TRANSACTIONS = """
local p = ARGV[1]
local changed = 0
for i = 2, #ARGV, 7 do
    local id, user, score, upd = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
    local valid, payload, body = ARGV[i+4], ARGV[i+5], ARGV[i+6]
    local new = upd .. '\\t' .. user .. '\\t' .. valid .. '\\t' .. body
    local old = redis.call('HGET', p .. 'txv', id)
    local replace = not old
    if old and old ~= new then
        local t1 = string.find(old, '\\t', 1, true)
        local old_upd = string.sub(old, 1, t1 - 1)
        if upd >= old_upd then
            replace = true
            local t2 = string.find(old, '\\t', t1 + 1, true)
            local old_user = string.sub(old, t1 + 1, t2 - 1)
            redis.call('ZREM', p .. 'tx:' .. old_user, id)
            redis.call('HDEL', p .. 'txa:' .. old_user, id)
        end
    end
    if replace then
        redis.call('HSET', p .. 'txv', id, new)
        if valid == '1' then
            redis.call('ZADD', p .. 'tx:' .. user, score, id)
            redis.call('HSET', p .. 'txa:' .. user, id, payload)
        end
        changed = changed + 1
    end
end
return changed
"""
APPLY_EVENTS = """
local p = ARGV[1]
local added = 0
for i = 2, #ARGV, 3 do
    local id, user, score = ARGV[i], ARGV[i+1], ARGV[i+2]
    if redis.call('HSETNX', p .. 'evs', id, user .. '\\t' .. score) == 1 and score ~= '' and user ~= '' then
        redis.call('ZADD', p .. 'ev:' .. user, score, id)
        added = added + 1
    end
end
return added
"""
READ = """
local p, user, at, from30, from_session, txn = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local profile = redis.call('HGET', p .. 'users', user) or ''
local params = redis.call('HGET', p .. 'meta', 'params') or ''
local window = redis.call('ZRANGEBYSCORE', p .. 'tx:' .. user, from30, '(' .. at, 'WITHSCORES')
local previous = redis.call('ZREVRANGEBYSCORE', p .. 'tx:' .. user, '(' .. at, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
local events = redis.call('ZCOUNT', p .. 'ev:' .. user, from_session, '(' .. at)
local ids = {}
for i = 1, #window, 2 do ids[#ids + 1] = window[i] end
local payloads = {}
if #ids > 0 then payloads = redis.call('HMGET', p .. 'txa:' .. user, unpack(ids)) end
local own = ''
if txn ~= '' then own = redis.call('HGET', p .. 'txv', txn) or '' end
return {profile, params, previous[2] or '', events, window, payloads, own}
"""


def padded(microseconds: int | None) -> str:
    """A version key that compares as text: '' (null, loses) below every time."""
    return "" if microseconds is None else f"{microseconds + 10**17:020d}"


@dataclass
class DecidedTransaction:
    transaction_id: str
    user_id: str
    created_us: int | None
    updated_us: int | None
    rule: str | None
    amount_usd: Decimal | None
    device_group: str
    record: dict[str, Any]


def decide_transactions(
    transactions: list[dict[str, str | None]], fx: Fx, loaded_us: list[int], skew_minutes: int
) -> list[DecidedTransaction]:
    """Each record cast and validated as validate_transactions does (the user rule excepted)."""
    rows = query(TRANSACTIONS_SQL, text_table(transactions, TRANSACTION_FIELDS))
    decided, amounts, rates = [], [], []
    for record, loaded, row in zip(transactions, loaded_us, rows, strict=True):
        txn_id, user_id, amount, _raw, is_number, currency, device, created, updated, day = row
        if txn_id is None:
            continue  # missing_key: nothing to key it by (the warehouse quarantines it)
        rate = fx.rate(currency, day) if created is not None and fx.known(currency) else None
        if created is None:
            rule = "unparseable_timestamp"
        elif created > loaded + skew_minutes * 60_000_000:
            rule = "created_at_in_future"
        elif amount is None and is_number:
            rule = "amount_out_of_range"
        elif amount is None:
            rule = "non_numeric_amount"
        elif amount < 0:
            rule = "negative_amount"
        elif not fx.known(currency):
            rule = "unknown_currency"
        elif rate is None:
            rule = "missing_fx_rate"
        elif user_id is None:
            rule = "unknown_user"
        else:
            rule = None
        kept = {k: record.get(k) for k in TRANSACTION_FIELDS}  # not the load time: a redelivery is the same
        decided.append(DecidedTransaction(txn_id, user_id or "", created, updated, rule, None, device, kept))
        amounts.append(amount if rule is None else None)
        rates.append(rate if rule is None else None)
    if decided:
        batch = pa.table({"amount": pa.array(amounts, pa.decimal128(28, 6)), "rate": pa.array(rates, pa.float64())})
        for item, (amount_usd,) in zip(decided, query(AMOUNT_USD_SQL, batch), strict=True):
            item.amount_usd = amount_usd
    return decided


def apply_batch(
    client: redis.Redis,
    transactions: list[dict[str, str | None]],
    events: list[dict[str, str | None]],
) -> None:
    """Add a micro-batch of contract records (the consumer's, after its load committed) to the online
    state. Idempotent: applying the same records again changes nothing."""
    now_us = int(time.time() * 1_000_000)
    apply_records(client, transactions, events, [now_us] * len(transactions))


def apply_records(
    client: redis.Redis,
    transactions: list[dict[str, str | None]],
    events: list[dict[str, str | None]],
    loaded_us: list[int],
) -> tuple[int, int]:
    """apply_batch with each transaction's load time (a re-decided version keeps its own): (transaction
    versions written, events added)."""
    changed = added = 0
    if transactions:
        meta = client.hget(PREFIX + "meta", "max_clock_skew_minutes")
        skew = int(meta) if meta else dbt_vars().max_clock_skew_minutes
        arguments: list[str] = [PREFIX]
        for item in decide_transactions(transactions, Fx.load(client), loaded_us, skew):
            valid = item.rule is None
            body = json.dumps(item.record | {"rule": item.rule}, sort_keys=True)
            payload = f"{item.amount_usd}\t{item.device_group}" if valid else ""
            score = str(item.created_us) if item.created_us is not None else "0"
            arguments += [
                item.transaction_id,
                item.user_id,
                score,
                padded(item.updated_us),
                "1" if valid else "0",
                payload,
                body,
            ]
        if len(arguments) > 1:
            changed = int(client.eval(APPLY_TRANSACTIONS, 0, *arguments))
    if events:
        arguments = [PREFIX]
        for event_id, user_id, occurred in query(EVENTS_SQL, text_table(events, EVENT_FIELDS)):
            if event_id is None:
                continue  # missing_key
            arguments += [event_id, user_id or "", "" if occurred is None else str(occurred)]
        if len(arguments) > 1:
            added = int(client.eval(APPLY_EVENTS, 0, *arguments))
    return changed, added


# ---------------------------------------------------------------------------------------------------
# reading: a user's features at a time, a stored transaction's features


def microseconds(moment: dt.datetime) -> int:
    """Microseconds since the epoch of a UTC time (an aware time is converted to UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_microseconds(value: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=value)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time ('2026-08-31T12:00:00Z', '2026-08-31 14:00:00+02:00'; no zone means UTC)."""
    moment = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


class UnknownUser(LookupError):
    """The store has no such user (never synced from the gold)."""


class UnknownTransaction(LookupError):
    """The store holds no valid transaction of that id for that user."""


class OutsideHistory(ValueError):
    """A time earlier than the store's history covers: its windows would be incomplete."""


class NotSynced(RuntimeError):
    """The store has never been synced: no preprocessing parameters."""


def read_state(client: redis.Redis, user_id: str, at_us: int, transaction_id: str = "") -> list[Any]:
    return client.eval(
        READ,
        0,
        PREFIX,
        user_id,
        str(at_us),
        str(at_us - 30 * DAY_US),
        str(at_us - SESSION_US),
        transaction_id,
    )


def user_features(client: redis.Redis, user_id: str, at: dt.datetime) -> dict[str, Any]:
    """The user-level features at `at`: what fct_transaction_features would give a transaction of
    this user at that instant, apart from the columns that need the transaction itself."""
    at_us = microseconds(at)
    features = history_features(user_id, at_us, read_state(client, user_id, at_us))
    del features["_params"]
    return {"user_id": user_id, "at": str(from_microseconds(at_us))} | features


def transaction_features(client: redis.Redis, user_id: str, transaction_id: str) -> dict[str, Any]:
    """Every feature column of fct_transaction_features for a stored valid transaction, at its own time."""
    version = client.hget(PREFIX + "txv", transaction_id)
    if version is None:
        raise UnknownTransaction(f"no transaction {transaction_id!r} in the online store")
    _updated, owner, valid, _body = version.decode().split("\t", 3)
    if owner != user_id or valid != "1":
        raise UnknownTransaction(f"no valid transaction {transaction_id!r} of user {user_id!r} in the online store")
    score = client.zscore(PREFIX + "tx:" + user_id, transaction_id)
    if score is None:  # replaced by a newer version between the two reads
        raise UnknownTransaction(f"no valid transaction {transaction_id!r} of user {user_id!r} in the online store")
    created_us = int(score)
    state = read_state(client, user_id, created_us, transaction_id)
    features = history_features(user_id, created_us, state)
    amount_text, device_group = (client.hget(PREFIX + "txa:" + user_id, transaction_id) or b"\t").decode().split("\t")
    return assemble(transaction_id, user_id, created_us, Decimal(amount_text), device_group, features)


def candidate_features(client: redis.Redis, record: dict[str, str | None]) -> dict[str, Any]:
    """The features of a transaction that is not stored (to score before accepting it): decided with
    the same rules, at its own created_at. ValueError naming the rule when it is not valid."""
    loaded = int(time.time() * 1_000_000)
    meta = client.hget(PREFIX + "meta", "max_clock_skew_minutes")
    skew = int(meta) if meta else dbt_vars().max_clock_skew_minutes
    decided = decide_transactions(
        [record | {"transaction_id": record.get("transaction_id") or "candidate"}], Fx.load(client), [loaded], skew
    )
    item = decided[0]
    if item.rule is not None:
        raise ValueError(f"the transaction is not valid: {item.rule}")
    state = read_state(client, item.user_id, item.created_us or 0)
    features = history_features(item.user_id, item.created_us or 0, state)
    return assemble(
        item.transaction_id,
        item.user_id,
        item.created_us or 0,
        item.amount_usd or Decimal(0),
        item.device_group,
        features,
    )


def assemble(
    transaction_id: str, user_id: str, created_us: int, amount_usd: Decimal, device_group: str, features: dict[str, Any]
) -> dict[str, Any]:
    params = features.pop("_params")
    amount = float(amount_usd)
    stddev = params["amount_usd_stddev"]
    created = from_microseconds(created_us)
    row = {
        "transaction_id": transaction_id,
        "user_id": user_id,
        "created_at": str(created),
        "transaction_date": str(created.date()),
        "amount_usd": amount,
        "amount_usd_scaled": None
        if not stddev or params["amount_usd_mean"] is None
        else (amount - params["amount_usd_mean"]) / stddev,
        "is_amount_outlier": params["amount_usd_p99"] is not None and amount > params["amount_usd_p99"],
        "device_mobile": device_group == "mobile",
        "device_desktop": device_group == "desktop",
        "device_tablet": device_group == "tablet",
        "device_other": device_group == "other",
    } | features
    return {name: row[name] for name in TRANSACTION_FEATURES}


def history_features(user_id: str, at_us: int, state: list[Any]) -> dict[str, Any]:
    profile_text, params_text, previous, events, window, payloads, _own = state
    if not params_text:
        raise NotSynced("the online store was never synced: run `python -m realtime.online_store sync`")
    if not profile_text:
        raise UnknownUser(f"user {user_id!r} is not in the online store (unknown user, or not synced yet)")
    profile, params = json.loads(profile_text), json.loads(params_text)
    serves_from = params.get("serves_from_us")
    if serves_from is not None and at_us < serves_from:
        raise OutsideHistory(
            f"{from_microseconds(at_us)} is before the online store's history (it serves from "
            f"{from_microseconds(serves_from)} on): read older features from fct_transaction_features"
        )
    counts = {1: 0, 7: 0, 30: 0}
    sums = {7: Decimal(0), 30: Decimal(0)}
    for index in range(0, len(window), 2):
        score = int(float(window[index + 1]))
        amount = Decimal(payloads[index // 2].decode().split("\t")[0])
        for days in (1, 7, 30):
            if score >= at_us - days * DAY_US:
                counts[days] += 1
                if days in sums:
                    sums[days] += amount
    at = from_microseconds(at_us)
    signup = profile["signup_us"]
    age = profile["age"]
    tier = None
    for start, end, value in profile["tiers"]:
        if start <= at_us and (end is None or at_us < end):
            tier = value
    return {
        "_params": params,
        "hour_of_day": at.hour,
        "day_of_week": at.weekday(),
        "is_weekend": at.weekday() in (5, 6),
        "user_txn_count_1d": counts[1],
        "user_txn_count_7d": counts[7],
        "user_txn_count_30d": counts[30],
        "user_amount_sum_7d": float(sums[7]),
        "user_amount_sum_30d": float(sums[30]),
        "user_amount_mean_30d": float(sums[30]) / counts[30] if counts[30] else None,
        "seconds_since_prev_txn": (at_us - int(float(previous))) / 1_000_000.0 if previous else None,
        "session_events_before_txn": int(events),
        "user_tenure_days": None if signup is None else math.floor((at_us - signup) / 86_400_000_000.0),
        "age": float(age) if age is not None else params["median_age"],
        "is_age_imputed": age is None,
        "country_us": profile["country"] == "us",
        "country_uk": profile["country"] == "uk",
        "country_ca": profile["country"] == "ca",
        "country_au": profile["country"] == "au",
        "country_other": profile["country"] == "other",
        "loyalty_tier": tier,
    }


# ---------------------------------------------------------------------------------------------------
# sync from the published gold


@dataclass
class SyncResult:
    invocation_id: str
    users: int
    currencies: int
    transactions: int
    events: int
    rechecked: int
    pruned: int
    seconds: float

    def line(self) -> str:
        return (
            f"[online] synced from gold {self.invocation_id}: {self.users:,} users, {self.currencies:,} currencies, "
            f"{self.transactions:,} transactions, {self.events:,} events, {self.rechecked:,} stored transactions "
            f"decided again, {self.pruned:,} records older than the store serves removed, in {self.seconds:.1f}s"
        )


def text_time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ")


def read_gold(path: Path, as_of: dt.date | None) -> dict[str, Any]:
    if not path.exists():
        raise StoreError(f"no published gold at {path}: run the pipeline first (`make run`)")
    cutoff = "" if as_of is None else f" where {{column}} < timestamp '{as_of.isoformat()}'"
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = {
            name
            for (name,) in connection.sql(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
        missing = sorted(
            {
                "online_users",
                "online_user_tiers",
                "online_fx_rates",
                "online_transactions",
                "online_events",
                "preprocessing_parameters",
            }
            - tables
        )
        if missing:
            raise StoreError(
                f"the published gold at {path} has no {', '.join(missing)}: run the pipeline once with this version"
            )
        [(invocation,)] = connection.sql("select invocation_id from publication.version").fetchall()

        def rows(sql: str) -> list[tuple]:
            return connection.sql(sql).fetchall()

        [(last_created,)] = connection.sql("select max(created_at) from marts.online_transactions").fetchall()
        return {
            "invocation_id": str(invocation),
            "last_day": None if last_created is None else last_created.date(),
            "params": connection.sql(
                "select amount_usd_mean, amount_usd_stddev, amount_usd_p99, median_age "
                "from marts.preprocessing_parameters"
            ).fetchone(),
            "users": rows("select user_id, epoch_us(signup_at), age, country_group from marts.online_users"),
            "tiers": rows(
                "select user_id, epoch_us(valid_from), epoch_us(valid_to), loyalty_tier "
                "from marts.online_user_tiers order by valid_from"
            ),
            "fx": rows(
                "select currency, valid_from_date - date '1970-01-01', valid_to_date - date '1970-01-01', rate_to_usd "
                "from marts.online_fx_rates order by currency, valid_from_date"
            ),
            "transactions": rows(
                "select transaction_id, user_id, cast(amount as varchar), currency, device_group, created_at, "
                "updated_at from marts.online_transactions"
                + cutoff.format(column="created_at")
                + " order by created_at"
            ),
            "events": rows(
                "select event_id, user_id, occurred_at from marts.online_events"
                + cutoff.format(column="occurred_at")
                + " order by occurred_at"
            ),
        }


def sync(client: redis.Redis, path: Path | None = None, as_of: dt.date | None = None) -> SyncResult:
    """Bootstrap or refresh the store from the published gold (read-only): users, tiers, FX rates and
    parameters are replaced as a whole, the history is added by id (what the stream added stays), and
    the stored transactions an FX change can decide otherwise are decided again."""
    from pipeline.warehouse.published import published_path

    started = time.perf_counter()
    gold = read_gold(path or published_path(), as_of)
    settings = dbt_vars()
    profiles: dict[str, dict[str, Any]] = {
        user_id: {"signup_us": signup, "age": age, "country": country, "tiers": []}
        for user_id, signup, age, country in gold["users"]
    }
    for user_id, start, end, tier in gold["tiers"]:
        if user_id in profiles:
            profiles[user_id]["tiers"].append([start, end, tier])
    fx: dict[str, list[list[Any]]] = {}
    for currency, start, end, rate in gold["fx"]:
        fx.setdefault(currency, [])
        if start is not None:
            fx[currency].append([start, end, rate])
    previous_fx = {k.decode(): json.loads(v) for k, v in client.hgetall(PREFIX + "fx").items()}
    mean, stddev, p99, median_age = gold["params"]
    # the gold's events start reprocess_days + 1 days before its last transaction day (online_events.sql):
    # a session count, and so every feature, is exact from 30 minutes after that on
    serves_from = None
    if gold["last_day"] is not None:
        events_from = dt.datetime.combine(gold["last_day"] - dt.timedelta(days=settings.reprocess_days + 1), dt.time())
        serves_from = microseconds(events_from) + SESSION_US
    params = {
        "amount_usd_mean": mean,
        "amount_usd_stddev": stddev,
        "amount_usd_p99": p99,
        "median_age": median_age,
        "serves_from_us": serves_from,
    }
    replace_hash(client, "users", {user_id: json.dumps(profile) for user_id, profile in profiles.items()})
    replace_hash(client, "fx", {currency: json.dumps(ranges) for currency, ranges in fx.items()})
    client.hset(
        PREFIX + "meta",
        mapping={
            "params": json.dumps(params),
            "as_of": "" if as_of is None else as_of.isoformat(),
            "reporting_currency": settings.reporting_currency,
            "max_clock_skew_minutes": str(settings.max_clock_skew_minutes),
        },
    )
    records = [
        {
            "transaction_id": txn_id,
            "user_id": user_id,
            "amount": amount,
            "currency": currency,
            "status": None,
            "device_type": device,
            "created_at": text_time(created),
            "updated_at": text_time(updated),
        }
        for txn_id, user_id, amount, currency, device, created, updated in gold["transactions"]
    ]
    events = [{"event_id": e, "user_id": u, "occurred_at": text_time(o)} for e, u, o in gold["events"]]
    for start in range(0, max(len(records), len(events)), 5000):
        loaded = [microseconds(from_text(r["created_at"])) for r in records[start : start + 5000]]
        apply_records(client, records[start : start + 5000], events[start : start + 5000], loaded)
    rechecked = recheck(client, first_changed_day(previous_fx, fx))
    pruned = prune(client, serves_from) if serves_from is not None else 0
    # last: the version a sync completed from (`--watch` compares it with the published one)
    client.hset(PREFIX + "meta", "invocation_id", gold["invocation_id"])
    return SyncResult(
        gold["invocation_id"],
        len(profiles),
        len(fx),
        len(records),
        len(events),
        rechecked,
        pruned,
        time.perf_counter() - started,
    )


def from_text(value: str | None) -> dt.datetime:
    return dt.datetime.fromisoformat(value) if value else EPOCH


def replace_hash(client: redis.Redis, name: str, mapping: dict[str, str]) -> None:
    """Replace a whole hash at once (a reader sees the old one or the new one, never a mix)."""
    temporary = f"{PREFIX}{name}:next"
    client.delete(temporary)
    items = list(mapping.items())
    for start in range(0, len(items), 5000):
        client.hset(temporary, mapping=dict(items[start : start + 5000]))
    if items:
        client.rename(temporary, PREFIX + name)
    else:
        client.delete(PREFIX + name)


def first_changed_day(before: dict[str, list[list[Any]]], after: dict[str, list[list[Any]]]) -> int | None:
    """The first day (since the epoch) whose rate changed between two FX states; None when none did."""
    if not before:
        return None  # the first sync: a stored transaction without its currency's rates is rechecked by its rule
    days = []
    for currency in set(before) | set(after):
        old, new = before.get(currency), after.get(currency)
        if old == new:
            continue
        if old is None or new is None:
            return -(10**9)
        changed = [r[0] for r in new if r not in old] + [r[0] for r in old if r not in new]
        days.append(min(changed))
    return min(days) if days else None


def recheck(client: redis.Redis, changed_day: int | None) -> int:
    """Decide again the stored transactions whose decision an FX change can alter: those rejected for
    an unknown currency or a missing rate, and those dated on or after the first changed rate. A version
    kept as created_at_in_future stays so (its load time does not change); the others passed that rule
    when they were loaded, so it is not applied again."""
    records = []
    for _txn_id, version in client.hscan_iter(PREFIX + "txv", count=5000):
        body = json.loads(version.decode().split("\t", 3)[3])
        created, rule = body.get("created_at"), body.get("rule")
        if rule in ("created_at_in_future", "unparseable_timestamp"):
            continue
        try:
            day = (from_text(created).date() - EPOCH.date()).days if created else None
        except ValueError:
            day = None  # a text the warehouse's cast reads but Python's does not: decided again below
        dated_after_the_change = changed_day is not None and (day is None or day >= changed_day)
        if rule in ("unknown_currency", "missing_fx_rate") or dated_after_the_change:
            records.append({k: body.get(k) for k in TRANSACTION_FIELDS})
    never_in_future = 2**62
    for start in range(0, len(records), 5000):
        chunk = records[start : start + 5000]
        apply_records(client, chunk, [], [never_in_future] * len(chunk))
    return len(records)


PRUNE = """
local p, user, txn_before, event_before = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local removed = 0
local old = redis.call('ZRANGEBYSCORE', p .. 'tx:' .. user, '-inf', '(' .. txn_before)
for i = 1, #old - 1 do  -- the latest before stays: seconds_since_prev_txn of the next one
    redis.call('ZREM', p .. 'tx:' .. user, old[i])
    redis.call('HDEL', p .. 'txa:' .. user, old[i])
    redis.call('HDEL', p .. 'txv', old[i])
    removed = removed + 1
end
local events = redis.call('ZRANGEBYSCORE', p .. 'ev:' .. user, '-inf', '(' .. event_before)
for i = 1, #events do
    redis.call('ZREM', p .. 'ev:' .. user, events[i])
    redis.call('HDEL', p .. 'evs', events[i])
    removed = removed + 1
end
return removed
"""


def prune(client: redis.Redis, serves_from_us: int) -> int:
    """Remove what no time the store serves can read: transactions more than 30 days before it (but each
    user's latest of them) and events more than 30 minutes before it. Returns how many records."""
    users = set()
    for pattern in ("tx:*", "ev:*"):
        for key in client.scan_iter(match=PREFIX + pattern, count=5000):
            users.add(key.decode()[len(PREFIX) + 3 :])
    removed = 0
    for user in users:
        cutoffs = (str(serves_from_us - 30 * DAY_US), str(serves_from_us - SESSION_US))
        removed += int(client.eval(PRUNE, 0, PREFIX, user, *cutoffs))
    return removed


def stored_transactions(client: redis.Redis, day: dt.date) -> dict[str, str]:
    """transaction_id -> user_id of the valid transactions of `day` the store serves. A transaction of a
    user the store does not know (not in the gold it synced) is held, not served: the warehouse
    quarantines it as unknown_user until the user arrives, and a sync that brings the user serves it."""
    start = microseconds(dt.datetime.combine(day, dt.time()))
    found = {}
    for txn_id, version in client.hscan_iter(PREFIX + "txv", count=5000):
        _updated, user, valid, _body = version.decode().split("\t", 3)
        if valid != "1" or not client.hexists(PREFIX + "users", user):
            continue
        score = client.zscore(PREFIX + "tx:" + user, txn_id)
        if score is not None and start <= int(score) < start + DAY_US:
            found[txn_id.decode()] = user
    return found


def clear(client: redis.Redis) -> int:
    """Delete every key of the store; how many."""
    keys = list(client.scan_iter(match=PREFIX + "*", count=10_000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
    return len(keys)


def connect(url: str | None = None) -> redis.Redis:
    """A client of the stack's Redis (ML_FEATURES_REDIS_URL, else the project's redis-server port)."""
    if url is None:
        from realtime.settings import Settings

        settings = Settings.from_env()
        url = settings.redis_url or f"redis://127.0.0.1:{settings.redis_port}/0"
    return redis.Redis.from_url(url)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.online_store", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync_parser = commands.add_parser("sync", help="bootstrap/refresh the online store from the published gold")
    sync_parser.add_argument(
        "--as-of", type=dt.date.fromisoformat, default=None, help="load only the history before this day"
    )
    sync_parser.add_argument(
        "--redis-url", default=None, help="default: ML_FEATURES_REDIS_URL or the stack's redis-server"
    )
    sync_parser.add_argument(
        "--gold", type=Path, default=None, help="the published gold file (default: published_path())"
    )
    sync_parser.add_argument(
        "--watch",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep running: look at the published gold every SECONDS and sync when a new version is published",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    client = connect(args.redis_url)
    try:
        if args.watch is None:
            print(sync(client, args.gold, args.as_of).line())
            return 0
        watch(client, args.gold, args.watch)
    except (StoreError, redis.ConnectionError) as error:
        print(f"[online] {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def watch(client: redis.Redis, gold: Path | None, seconds: float) -> None:
    """Sync whenever the published gold holds another version than the store was synced from (the
    file is only opened read-only, so the pipeline is never held up); until interrupted."""
    from pipeline.warehouse.published import published_invocation, published_path

    path = gold or published_path()
    while True:
        try:
            published = published_invocation(path)
            synced = client.hget(PREFIX + "meta", "invocation_id")
            if published is not None and (synced is None or synced.decode() != published):
                print(sync(client, path).line(), flush=True)
        except (StoreError, redis.ConnectionError) as error:  # Redis restarting, an old gold: try again later
            print(f"[online] {error}", file=sys.stderr, flush=True)
        time.sleep(seconds)


if __name__ == "__main__":
    sys.exit(main())
