"""Training/serving skew: a day replayed through the real service and consumer gives, for every
transaction, the online features the batch fct_transaction_features row holds (to 1e-9, every column
but the label)."""

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from realtime_support import REPO_ROOT, Stack, realtime_stack_on_warehouse  # noqa: F401 (fixture)

from pipeline.warehouse.published import published_path, refresh_published
from realtime import online_store, skew


def last_day(gold: Path) -> dt.date:
    with duckdb.connect(str(gold), read_only=True) as connection:
        [(day,)] = connection.sql("select max(transaction_date) from marts.fct_transaction_features").fetchall()
    return day


def test_replayed_days_have_the_batch_features(realtime_stack_on_warehouse: Stack) -> None:  # noqa: F811
    stack = realtime_stack_on_warehouse
    assert refresh_published(str(stack.duckdb_path)) is not None
    gold = published_path()
    day = last_day(gold)
    consumer = stack.start_consumer()
    # three days: the later days' windows read transactions and events the replay itself streamed
    report = skew.check(stack.client(), day, stack.duckdb_path, gold, service=stack.url, token=stack.token, days=3)
    print("\n".join(report.lines()))
    assert consumer.poll() is None, consumer.stdout.read() if consumer.stdout else ""
    with duckdb.connect(str(gold), read_only=True) as connection:
        [(rows, with_history, with_session)] = connection.execute(
            "select count(*), count(*) filter (user_txn_count_30d > 0), "
            "count(*) filter (session_events_before_txn > 0) "
            "from marts.fct_transaction_features where transaction_date between ? and ?",
            [day - dt.timedelta(days=2), day],
        ).fetchall()
    # the day is a real test: transactions with a history and with session events before them
    assert report.compared == rows > 0 and with_history > 0 and with_session > 0
    assert report.replayed_events > 0
    assert dict(report.mismatches) == {}, "\n".join(report.lines())
    # again into a cleared store: the service publishes the records once more (a replay answered
    # `duplicate` would never reach the store)
    again = skew.check(stack.client(), day, stack.duckdb_path, gold, service=stack.url, token=stack.token, fresh=True)
    assert again.compared > 0 and dict(again.mismatches) == {}, "\n".join(again.lines())
    stack.wait_consumed(consumer)
    # the replayed records reached the warehouse's raw stream tables too (the consumer's load)
    [(raw_rows,)] = stack.query("select count(*) from raw_stream.transactions")
    assert raw_rows > 0

    # the command (applying to the store directly) on the same warehouse: 0 mismatches, exit 0
    command = [sys.executable, "-m", "realtime.skew", "--date", str(day), "--redis-url", stack.redis_server.url]
    run = subprocess.run(command, cwd=REPO_ROOT, env=stack.environment, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS: 0 mismatches" in run.stdout and "is_fraud, is_label_matured" in run.stdout

    client = stack.client()
    # a definition difference is caught: a served column changed in the store fails the check and names it
    txn_id = report_first_transaction(gold, day)
    user = online_store.transaction_features(client, *txn_id)["user_id"]
    payload = client.hget(online_store.PREFIX + "txa:" + user, txn_id[1]).decode()
    amount, device = payload.split("\t")
    client.hset(online_store.PREFIX + "txa:" + user, txn_id[1], f"{float(amount) + 0.01:.6f}\t{device}")
    broken = skew.SkewReport(day)
    skew.compare(client, skew.batch_rows(gold, day), day, broken)
    assert broken.mismatches["amount_usd"] == 1 and broken.mismatches["amount_usd_scaled"] == 1
    client.hset(online_store.PREFIX + "txa:" + user, txn_id[1], payload)

    # a store whose fitted parameters differ from the gold's (a stale sync) is a mismatch of exactly the
    # column they feed, on every row
    params = json.loads(client.hget(online_store.PREFIX + "meta", "params"))
    params["amount_usd_mean"] += 1.0
    client.hset(online_store.PREFIX + "meta", "params", json.dumps(params))
    stale = skew.SkewReport(day)
    skew.compare(client, skew.batch_rows(gold, day), day, stale)
    assert stale.mismatches["amount_usd_scaled"] == stale.compared > 0
    assert set(stale.mismatches) == {"amount_usd_scaled"}


def report_first_transaction(gold: Path, day: dt.date) -> tuple[str, str]:
    with duckdb.connect(str(gold), read_only=True) as connection:
        [(user, txn)] = connection.execute(
            "select user_id, transaction_id from marts.fct_transaction_features where transaction_date = ? "
            "order by created_at limit 1",
            [day],
        ).fetchall()
    return str(user), str(txn)


def test_the_service_token_comes_from_the_setting_or_the_token_file_never_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_FEATURES_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ML_FEATURES_REALTIME_TOKEN", raising=False)
    assert skew.service_token() is None
    (tmp_path / "realtime").mkdir()
    (tmp_path / "realtime" / "token").write_text("from-the-file\n")
    assert skew.service_token() == "from-the-file"
    monkeypatch.setenv("ML_FEATURES_REALTIME_TOKEN", "from-the-setting")
    assert skew.service_token() == "from-the-setting"
    with pytest.raises(SystemExit) as refused:  # argparse: unrecognized arguments
        skew.main(["--date", "2026-08-31", "--service", "http://127.0.0.1:9", "--token", "visible-in-ps"])
    assert refused.value.code == 2
