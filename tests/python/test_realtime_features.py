"""The online feature store on a real redis-server, and its HTTP endpoints on the real service: idempotent
micro-batches, the point-in-time definitions of fct_transaction_features at their edges (ties, window and
session bounds, FX rate dates, the tier as of t, imputed age), later versions of a transaction, unknown
users, and scoring with the latest trained model."""

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import joblib
import numpy as np
import pytest
import redis
from conftest import free_port
from realtime_support import REPO_ROOT, Stack, realtime_stack  # noqa: F401 (fixture)
from sklearn.ensemble import HistGradientBoostingClassifier

from pipeline.training.train import BOOLEAN_FEATURES, NUMERIC_FEATURES, feature_matrix
from realtime import online_store
from realtime.features_api import feature_table
from realtime.redis_server import RedisServer

PARAMS = {"amount_usd_mean": 100.0, "amount_usd_stddev": 50.0, "amount_usd_p99": 500.0, "median_age": 41.5}
T0 = dt.datetime(2026, 3, 10, 12, 0, 0)


def write_gold(
    path: Path,
    transactions: list[tuple] = (),
    events: list[tuple] = (),
    fx_extra: list[tuple] = (),
    invocation: str = "test-invocation",
) -> Path:
    """A published gold file shaped like pipeline/warehouse/published.py writes it, with the online_* tables."""
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute("set TimeZone = 'UTC'; create schema marts; create schema publication")
        connection.execute(
            "create table publication.version as select ? as invocation_id, now()::timestamp as published_at",
            [invocation],
        )
        connection.execute(
            "create table marts.preprocessing_parameters as select ?::double as amount_usd_mean, "
            "?::double as amount_usd_stddev, ?::double as amount_usd_p99, ?::double as median_age",
            list(PARAMS.values()),
        )
        connection.execute(
            "create table marts.online_users (user_id varchar, signup_at timestamp, age integer, country_group varchar)"
        )
        connection.execute(
            "insert into marts.online_users values ('u1', '2025-03-10 18:00:00', 30, 'uk'), "
            "('u2', '2026-01-01 00:00:00', null, 'other')"
        )
        connection.execute(
            "create table marts.online_user_tiers (user_id varchar, loyalty_tier varchar, valid_from timestamp, "
            "valid_to timestamp)"
        )
        connection.execute(
            "insert into marts.online_user_tiers values "
            "('u1', 'bronze', '2025-03-10 18:00:00', '2026-03-10 12:00:00'), "
            "('u1', 'gold', '2026-03-10 12:00:00', null)"
        )
        connection.execute(
            "create table marts.online_fx_rates (currency varchar, valid_from_date date, valid_to_date date, "
            "rate_to_usd double)"
        )
        # EUR: Friday's rate holds over the weekend until Monday's; GBP known without rates; USD converts at 1
        connection.execute(
            "insert into marts.online_fx_rates values ('USD', null, null, null), ('GBP', null, null, null), "
            "('EUR', '2026-03-06', '2026-03-09', 1.1), ('EUR', '2026-03-09', '9999-12-31', 1.2)"
        )
        for row in fx_extra:
            connection.execute("insert into marts.online_fx_rates values (?, ?, ?, ?)", list(row))
        connection.execute(
            "create table marts.online_transactions (transaction_id varchar, user_id varchar, created_at timestamp, "
            "updated_at timestamp, amount decimal(28, 6), currency varchar, amount_usd decimal(28, 6), "
            "device_group varchar)"
        )
        for row in transactions:
            connection.execute("insert into marts.online_transactions values (?, ?, ?, ?, ?, ?, ?, ?)", list(row))
        connection.execute(
            "create table marts.online_events (event_id varchar, user_id varchar, occurred_at timestamp)"
        )
        for row in events:
            connection.execute("insert into marts.online_events values (?, ?, ?)", list(row))
    return path


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server child for the module's tests (each starts from an empty database)."""
    with RedisServer(free_port(), tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def empty_redis(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    return client


@pytest.fixture
def store(empty_redis: redis.Redis, tmp_path: Path) -> redis.Redis:
    """The store synced from a small gold file."""
    online_store.sync(empty_redis, write_gold(tmp_path / "gold.duckdb"))
    return empty_redis


def txn(
    txn_id: str,
    at: dt.datetime,
    amount: str = "10.00",
    user: str = "u1",
    updated: dt.datetime | None = None,
    **more: Any,
) -> dict[str, str | None]:
    record = {
        "transaction_id": txn_id,
        "user_id": user,
        "amount": amount,
        "currency": "USD",
        "status": "completed",
        "device_type": "mobile",
        "created_at": str(at),
        "updated_at": str(updated or at),
    }
    return record | more


def event(event_id: str | None, at: dt.datetime | None, user: str = "u1") -> dict[str, str | None]:
    return {"event_id": event_id, "user_id": user, "session_id": "s", "event_type": "view", "device_type": "mobile",
            "occurred_at": None if at is None else str(at), "properties": None}  # fmt: skip


def state(client: redis.Redis) -> dict[str, Any]:
    """Every key of the store with its whole content."""
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match=online_store.PREFIX + "*")):
        kind = client.type(key).decode()
        if kind == "hash":
            out[key.decode()] = client.hgetall(key)
        elif kind == "zset":
            out[key.decode()] = client.zrange(key, 0, -1, withscores=True)
    return out


def features_of(client: redis.Redis, txn_id: str, user: str = "u1") -> dict[str, Any]:
    return online_store.transaction_features(client, user, txn_id)


def test_a_batch_applied_twice_changes_nothing(store: redis.Redis) -> None:
    transactions = [
        txn("t1", T0 - dt.timedelta(hours=5)),
        txn("t2", T0 - dt.timedelta(hours=1), "25.50"),
        txn("t3", T0),
    ]
    events = [event("e1", T0 - dt.timedelta(minutes=10)), event("e1", T0 - dt.timedelta(minutes=10)),
              event("e2", T0 - dt.timedelta(minutes=5))]  # fmt: skip
    online_store.apply_batch(store, transactions, events)
    first, features = state(store), features_of(store, "t3")
    online_store.apply_batch(store, transactions, events)  # a redelivery of the whole batch
    assert state(store) == first
    assert features_of(store, "t3") == features
    assert features["user_txn_count_1d"] == 2 and features["user_amount_sum_7d"] == 35.5
    assert features["session_events_before_txn"] == 2  # e1 delivered twice counts once


def test_ties_at_the_same_microsecond_are_not_before(store: redis.Redis) -> None:
    at = T0 + dt.timedelta(microseconds=250)
    online_store.apply_batch(store, [txn("a", at), txn("b", at), txn("c", at + dt.timedelta(microseconds=1))], [])
    for tied in ("a", "b"):
        tied_features = features_of(store, tied)
        assert tied_features["user_txn_count_1d"] == 0 and tied_features["seconds_since_prev_txn"] is None
    later = features_of(store, "c")
    assert later["user_txn_count_1d"] == 2 and later["seconds_since_prev_txn"] == 1e-6


def test_window_and_session_edges_are_exact_durations(store: redis.Redis) -> None:
    day, microsecond = dt.timedelta(days=1), dt.timedelta(microseconds=1)
    transactions = [
        txn("exactly_1d", T0 - day, "1"),  # in [t - 1 day, t)
        txn("just_over_1d", T0 - day - microsecond, "2"),  # 7d only
        txn("exactly_7d", T0 - 7 * day, "4"),
        txn("exactly_30d", T0 - 30 * day, "8"),
        txn("just_over_30d", T0 - 30 * day - microsecond, "16"),  # outside every window, still the past
        txn("t", T0, "100"),
    ]
    half_hour = dt.timedelta(minutes=30)
    events = [event("at_30min", T0 - half_hour), event("over_30min", T0 - half_hour - microsecond),
              event("at_t", T0), event("after", T0 + microsecond)]  # fmt: skip
    online_store.apply_batch(store, transactions, events)
    features = features_of(store, "t")
    assert (features["user_txn_count_1d"], features["user_txn_count_7d"], features["user_txn_count_30d"]) == (1, 3, 4)
    assert features["user_amount_sum_7d"] == 7.0 and features["user_amount_sum_30d"] == 15.0
    assert features["user_amount_mean_30d"] == 15.0 / 4
    assert features["seconds_since_prev_txn"] == 86_400.0
    assert features["session_events_before_txn"] == 1
    first = features_of(store, "just_over_30d")
    assert first["user_txn_count_30d"] == 0 and first["user_amount_mean_30d"] is None
    assert first["user_amount_sum_30d"] == 0.0 and first["seconds_since_prev_txn"] is None


def test_the_user_features_and_the_preprocessing(store: redis.Redis) -> None:
    # Sunday 2026-03-08 23:30 in EUR: Friday's rate (the latest rate date <= the transaction date), 1.1
    sunday = dt.datetime(2026, 3, 8, 23, 30)
    online_store.apply_batch(store, [txn("eur", sunday, "1000.005", currency=" eur ", device_type=" Phablet")], [])
    features = features_of(store, "eur")
    assert features["amount_usd"] == 1100.0055  # numeric(28, 6) of 1000.005 x 1.1, as DuckDB casts it
    assert features["amount_usd_scaled"] == (1100.0055 - 100.0) / 50.0 and features["is_amount_outlier"] is True
    assert (features["hour_of_day"], features["day_of_week"], features["is_weekend"]) == (23, 6, True)
    assert features["device_other"] and not features["device_mobile"]
    assert features["country_uk"] and not features["country_other"]
    assert features["age"] == 30.0 and features["is_age_imputed"] is False
    assert features["user_tenure_days"] == 363  # 2025-03-10 18:00 -> 2026-03-08 23:30: 363 whole days
    assert features["loyalty_tier"] == "bronze"
    # the tier as of t: gold from 2026-03-10 12:00 on, bronze a microsecond before
    assert online_store.user_features(store, "u1", T0)["loyalty_tier"] == "gold"
    assert online_store.user_features(store, "u1", T0 - dt.timedelta(microseconds=1))["loyalty_tier"] == "bronze"
    # no age: the fitted median, flagged; no tier history: null
    other = online_store.user_features(store, "u2", T0)
    assert other["age"] == PARAMS["median_age"] and other["is_age_imputed"] is True
    assert other["loyalty_tier"] is None and other["country_other"] is True


def test_invalid_records_stay_out_of_the_windows(store: redis.Redis) -> None:
    future = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=2)
    bad = [
        txn("negative", T0 - dt.timedelta(hours=1), "-5"),
        txn("not_a_number", T0 - dt.timedelta(hours=1), "ten"),
        txn("too_large", T0 - dt.timedelta(hours=1), "1e30"),
        txn("unknown_currency", T0 - dt.timedelta(hours=1), currency="XXX"),
        txn("no_rate_yet", T0 - dt.timedelta(hours=1), currency="GBP"),
        txn("bad_time", T0, created_at="yesterday"),
        txn("future", future, updated=future),
        txn("no_user", T0 - dt.timedelta(hours=1), user=None),
        txn(None, T0 - dt.timedelta(hours=1)),
        txn("t", T0),
    ]
    online_store.apply_batch(store, bad, [event(None, T0 - dt.timedelta(minutes=1)), event("no_time", None)])
    features = features_of(store, "t")
    assert features["user_txn_count_1d"] == 0 and features["session_events_before_txn"] == 0
    for rejected in ("negative", "not_a_number", "too_large", "unknown_currency", "no_rate_yet", "future"):
        with pytest.raises(online_store.UnknownTransaction):
            features_of(store, rejected)


def test_a_later_version_replaces_the_earlier_one(store: redis.Redis) -> None:
    created = T0 - dt.timedelta(hours=2)
    first = txn("v", created, "10", updated=created)
    second = txn("v", created, "20", updated=created + dt.timedelta(hours=1), device_type="desktop")
    online_store.apply_batch(store, [first, txn("t", T0)], [])
    assert features_of(store, "t")["user_amount_sum_7d"] == 10.0
    online_store.apply_batch(store, [second], [])
    assert features_of(store, "t")["user_amount_sum_7d"] == 20.0 and features_of(store, "v")["device_desktop"]
    online_store.apply_batch(store, [first], [])  # the older version delivered again: still the newer one
    assert features_of(store, "t")["user_amount_sum_7d"] == 20.0
    # a newer version that is no longer valid leaves the windows; one for another user moves there
    online_store.apply_batch(store, [txn("v", created, "-1", updated=created + dt.timedelta(hours=2))], [])
    assert features_of(store, "t")["user_txn_count_1d"] == 0
    moved = txn("v", created, "30", user="u2", updated=created + dt.timedelta(hours=3))
    online_store.apply_batch(store, [moved], [])
    assert online_store.user_features(store, "u2", T0)["user_amount_sum_7d"] == 30.0
    assert online_store.user_features(store, "u1", T0)["user_txn_count_1d"] == 0


def test_sync_adds_history_and_decides_again_what_a_new_rate_changes(store: redis.Redis, tmp_path: Path) -> None:
    monday = dt.datetime(2026, 3, 16, 9, 0)
    online_store.apply_batch(
        store, [txn("gbp", monday, "10", currency="GBP"), txn("t", monday + dt.timedelta(hours=1))], []
    )
    with pytest.raises(online_store.UnknownTransaction):
        features_of(store, "gbp")  # missing_fx_rate: no GBP rate yet
    ancient = [txn("ancient1", dt.datetime(2026, 1, 1)), txn("ancient2", dt.datetime(2026, 1, 5))]
    online_store.apply_batch(store, ancient, [event("old_event", dt.datetime(2026, 3, 9, 23))])
    history = [("old", "u1", monday - dt.timedelta(days=2), monday - dt.timedelta(days=2), 5, "USD", 5, "tablet")]
    gold = write_gold(
        tmp_path / "gold.duckdb", transactions=history, fx_extra=[("GBP", "2026-03-13", "9999-12-31", 1.25)]
    )
    online_store.sync(store, gold)
    online_store.sync(store, gold)  # a sync again changes nothing
    assert features_of(store, "gbp")["amount_usd"] == 12.5
    features = features_of(store, "t")
    assert features["user_txn_count_7d"] == 2 and features["user_amount_sum_7d"] == 17.5
    # the gold's last day is 2026-03-14: its events start 4 days before, so the store serves from
    # 2026-03-10 00:30; older records no time it serves can read are removed, but each user's latest
    # transaction before the windows (seconds_since_prev_txn)
    with pytest.raises(online_store.OutsideHistory):
        online_store.user_features(store, "u1", dt.datetime(2026, 3, 10, 0, 29, 59))
    assert online_store.user_features(store, "u1", dt.datetime(2026, 3, 10, 0, 30))["user_txn_count_30d"] == 0
    with pytest.raises(online_store.UnknownTransaction):
        features_of(store, "ancient1")
    assert store.zscore(online_store.PREFIX + "tx:u1", "ancient2") is not None
    assert store.hget(online_store.PREFIX + "evs", "old_event") is None
    assert (
        features_of(store, "old")["seconds_since_prev_txn"]
        == (dt.datetime(2026, 3, 14, 9) - dt.datetime(2026, 1, 5)).total_seconds()
    )


def test_unknown_users_and_a_store_never_synced(empty_redis: redis.Redis, tmp_path: Path) -> None:
    client = empty_redis
    with pytest.raises(online_store.NotSynced):
        online_store.user_features(client, "u1", T0)
    online_store.sync(client, write_gold(tmp_path / "gold.duckdb"))
    online_store.apply_batch(client, [txn("x", T0, user="nobody")], [event("ex", T0, user="nobody")])
    with pytest.raises(online_store.UnknownUser):
        online_store.user_features(client, "nobody", T0)
    # held, not served: the skew check must not count it as a valid transaction the batch lacks
    assert "x" not in online_store.stored_transactions(client, T0.date())
    with pytest.raises(online_store.StoreError, match="no published gold"):
        online_store.sync(client, tmp_path / "missing.duckdb")


def test_the_http_endpoints(realtime_stack: Stack, tmp_path: Path) -> None:  # noqa: F811
    stack = realtime_stack
    assert stack.get("/features/u1", at=str(T0)).status_code == 503  # never synced
    client = stack.client()
    online_store.sync(client, write_gold(tmp_path / "gold.duckdb"))
    online_store.apply_batch(
        client, [txn("h1", T0 - dt.timedelta(hours=3), "40"), txn("h2", T0)], [event("s", T0 - dt.timedelta(minutes=1))]
    )

    answer = stack.get("/features/u1", at="2026-03-10T13:00:00+01:00")  # the same instant as T0
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (
        body["user_txn_count_1d"] == 1 and body["user_amount_sum_7d"] == 40.0 and body["session_events_before_txn"] == 1
    )
    assert set(body) == {"user_id", "at", *online_store.USER_FEATURES}  # not the transaction's, not the label
    row = stack.get("/features/u1/transactions/h2").json()
    assert {k: row[k] for k in online_store.USER_FEATURES} == {k: body[k] for k in online_store.USER_FEATURES}
    assert row["amount_usd"] == 10.0 and row["created_at"] == str(T0)
    assert stack.get("/features/nobody", at=str(T0)).status_code == 404
    assert stack.get("/features/u1/transactions/nope").status_code == 404
    assert stack.get("/features/u1", at="not a time").status_code == 422
    assert stack.get("/features/u1", token=None).status_code == 401

    score = httpx_post(stack, {"user_id": "u1", "transaction_id": "h2"})
    assert score.status_code == 503 and "no trained model" in score.text

    # a trained model where pipeline/training/train.py writes it: the newest is used
    models = stack.data_dir / "models"
    width = len(NUMERIC_FEATURES) + len(BOOLEAN_FEATURES) + 1
    rng = np.random.default_rng(0)
    for version, trained_at in (("old", "2026-01-01T00:00:00+00:00"), ("new", "2026-02-01T00:00:00+00:00")):
        model = HistGradientBoostingClassifier(max_iter=5).fit(rng.normal(size=(200, width)), rng.integers(0, 2, 200))
        folder = models / f"training_set-{version}"
        folder.mkdir(parents=True)
        joblib.dump(model, folder / "model.joblib")
        (folder / "metrics.json").write_text(json.dumps({"version": version, "trained_at": trained_at}))
    score = httpx_post(stack, {"user_id": "u1", "transaction_id": "h2"})
    assert score.status_code == 200, score.text
    result = score.json()
    expected = joblib.load(models / "training_set-new" / "model.joblib").predict_proba(
        feature_matrix(feature_table(result["features"]))
    )[0, 1]
    assert result["model_version"] == "new" and result["score"] == pytest.approx(expected, abs=1e-12)
    candidate = httpx_post(stack, {"transaction": txn("new", T0 + dt.timedelta(minutes=1), "99")})
    assert candidate.status_code == 200 and candidate.json()["features"]["user_txn_count_1d"] == 2
    assert httpx_post(stack, {"transaction": txn("neg", T0, "-1")}).status_code == 422

    # a gold whose last day is 2026-03-10: the store serves from 2026-03-06 00:30 on, earlier is 422
    history = [("g", "u1", T0 - dt.timedelta(hours=5), T0 - dt.timedelta(hours=5), 1, "USD", 1, "mobile")]
    online_store.sync(client, write_gold(tmp_path / "gold.duckdb", transactions=history, invocation="later"))
    before = stack.get("/features/u1", at="2026-03-06T00:29:59")
    assert before.status_code == 422 and "before the online store's history" in before.text
    assert stack.get("/features/u1", at="2026-03-06T00:30:00").status_code == 200


def httpx_post(stack: Stack, body: dict[str, Any]) -> Any:
    import httpx

    return httpx.post(f"{stack.url}/score", json=body, headers=stack.headers(), timeout=30)


def test_sync_watch_follows_each_new_publication(empty_redis: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    """`sync --watch`: a new version of the published gold (renamed over the file, as the pipeline
    publishes) reaches the store without a restart."""
    gold = write_gold(tmp_path / "gold.duckdb", invocation="first")
    command = [sys.executable, "-m", "realtime.online_store", "sync", "--watch", "0.1"]
    command += ["--redis-url", redis_url, "--gold", str(gold)]
    watcher = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_for(invocation: str) -> None:
        deadline = time.monotonic() + 60
        while empty_redis.hget(online_store.PREFIX + "meta", "invocation_id") != invocation.encode():
            assert time.monotonic() < deadline and watcher.poll() is None, f"not synced to {invocation}"
            time.sleep(0.05)

    try:
        wait_for("first")
        history = [("h", "u1", T0 - dt.timedelta(hours=1), T0 - dt.timedelta(hours=1), 7, "USD", 7, "mobile")]
        write_gold(tmp_path / "next.duckdb", transactions=history, invocation="second").replace(gold)
        wait_for("second")
        assert online_store.user_features(empty_redis, "u1", T0)["user_amount_sum_7d"] == 7.0
    finally:
        watcher.kill()
        watcher.wait()
