"""Your own keys and currency (issue 22): text ids end to end, a reporting currency without rates.

A small app database in SQLite as a user brings one: prefixed ids (`txn-000123`, `u-0042`), UUIDs,
ids with leading zeros beside the same digits without them (`00002` and `2` are two users), and an
integer id, in an INTEGER column holding text too (dlt keeps those values in `<column>__v_text`).
One currency (USD, the reporting currency), and no FX API, clickstream or chargebacks: those
sources are turned off. Every valid transaction must reach the features with hand-worked values.
"""

import sqlite3
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from conftest import RUN_DATE as DEMO_RUN_DATE
from conftest import Warehouse, table_hash
from extract_support import Workspace, workspace

from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import run_dbt

RUN_DATE = "1998-06-30"
UUID_USER = "c56a4180-65aa-42ec-a945-5fd21dec0538"
UUID_TRANSACTION = "8d3c9a52-1b0e-4f7a-9a43-2d5e8f1c7b60"
# (user_id, age, country, signup_at); '00002' is not '2'; age 'forty' is text in an INTEGER column
USERS = [
    ("u-0042", 35, "us", "1997-01-01 00:00:00"),
    ("00002", "forty", "uk", "1997-01-05 00:00:00"),
    ("2", 50, "ca", "1997-01-05 00:00:00"),
    (UUID_USER, 28, "au", "1997-01-02 00:00:00"),
    *[(f"u-{number:04d}", 40, "us", "1997-03-01 00:00:00") for number in range(100, 105)],
]
# (transaction_id, user_id, amount, currency, created_at); the id column is INTEGER, as in many apps
TRANSACTIONS = [
    ("txn-000123", "u-0042", "10.00", "USD", "1997-01-10 10:00:00"),
    ("txn-000124", "u-0042", "5.00", "USD", "1997-01-10 10:00:00"),
    ("txn-000125", "u-0042", "20.00", "USD", "1997-01-12 09:00:00"),
    (UUID_TRANSACTION, "u-0042", "7.50", "USD", "1997-02-20 09:00:00"),
    ("txn-000200", "00002", "3.00", "USD", "1997-01-06 12:00:00"),
    ("txn-000201", "00002", "4.00", "USD", "1997-01-06 18:00:00"),
    (77, "2", "100.00", "USD", "1997-01-06 13:00:00"),
    ("txn-000301", "2", "1.00", "USD", "1997-01-07 13:00:00"),
    ("txn-000400", UUID_USER, "12.34", "USD", "1997-03-01 00:00:00"),
    *[
        (f"txn-1{user:03d}{day:02d}", f"u-{user:04d}", f"{user - 90}.00", "USD", f"1997-04-{day:02d} 08:30:00")
        for user in range(100, 105)
        for day in (1, 3, 10, 20)
    ],
    # quarantined: a user nobody has, a currency without any rate
    ("txn-000900", "u-9999", "1.00", "USD", "1997-01-10 10:00:00"),
    ("txn-000901", "u-0042", "1.00", "EUR", "1997-01-11 10:00:00"),
]
QUARANTINED = {"txn-000900": "unknown_user", "txn-000901": "missing_fx_rate"}
# hand-worked: (user_id, count 1d, 7d, 30d, sum 7d, sum 30d, mean 30d, seconds since previous, tenure days)
EXPECTED = {
    # the first two share a timestamp: neither is before the other
    "txn-000123": ("u-0042", 0, 0, 0, 0, 0, None, None, 9),
    "txn-000124": ("u-0042", 0, 0, 0, 0, 0, None, None, 9),
    # 47 hours after the tie; 11 days 9 hours after sign-up
    "txn-000125": ("u-0042", 0, 2, 2, 15, 15, 7.5, 169_200.0, 11),
    # 39 days after the previous one: every window is empty
    UUID_TRANSACTION: ("u-0042", 0, 0, 0, 0, 0, None, 39 * 86_400.0, 50),
    # '00002' does not see the transaction of user '2' at 13:00 the same day
    "txn-000201": ("00002", 1, 1, 1, 3, 3, 3.0, 21_600.0, 1),
    "77": ("2", 0, 0, 0, 0, 0, None, None, 1),
    # exactly one day after the previous one: inside [t - 1 day, t)
    "txn-000301": ("2", 1, 1, 1, 100, 100, 100.0, 86_400.0, 2),
}


def write_app_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(
            "create table users (user_id text, name text, email text, age integer, country text, "
            "signup_at text, updated_at text)"
        )
        connection.execute(
            "create table transactions (transaction_id integer, user_id text, amount text, currency text, "
            "status text, device_type text, created_at text, updated_at text)"
        )
        connection.executemany(
            "insert into users values (?, 'someone', 'someone@example.com', ?, ?, ?, ?)",
            [(user, age, country, signup, signup) for user, age, country, signup in USERS],
        )
        connection.executemany(
            "insert into transactions values (?, ?, ?, ?, 'completed', 'mobile', ?, ?)",
            [(txn, user, amount, currency, at, at) for txn, user, amount, currency, at in TRANSACTIONS],
        )


@pytest.fixture(scope="module")
def own_data_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The app database above, the other sources turned off, extracted and built once."""
    with pytest.MonkeyPatch.context() as patch:
        space = workspace(tmp_path_factory.mktemp("own_keys"), patch)
        database = space.data_dir / "app.sqlite"
        write_app_database(database)
        for key, value in {
            "SOURCES__APP_DATABASE__DEMO": "false",
            "SOURCES__APP_DATABASE__CREDENTIALS": f"sqlite:///{database}",
            "SOURCES__EVENT_STREAM__ENABLED": "false",
            "SOURCES__BUCKET_FILES__ENABLED": "false",
            "SOURCES__FX_API__ENABLED": "false",
        }.items():
            patch.setenv(key, value)
        for name in SOURCES:
            load_source(name)
        build = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
        assert build.success, build.failures
    return space


def test_text_ids_reach_the_features_with_the_right_values(own_data_warehouse: Workspace) -> None:
    space = own_data_warehouse
    # the app reader kept the text ids of the INTEGER column in its variant column: staging reads them
    assert "transaction_id__v_text" in space.columns("raw_app.transactions")
    valid = {str(row[0]) for row in TRANSACTIONS if str(row[0]) not in QUARANTINED}
    assert len(valid) == 29
    features = {
        row[0]: row[1:]
        for row in space.query(
            "select transaction_id, user_id, user_txn_count_1d, user_txn_count_7d, user_txn_count_30d, "
            "user_amount_sum_7d, user_amount_sum_30d, user_amount_mean_30d, seconds_since_prev_txn, "
            "user_tenure_days, amount_usd, is_age_imputed, is_fraud, is_label_matured "
            "from marts.fct_transaction_features"
        )
    }
    assert set(features) == valid
    for transaction_id, expected in EXPECTED.items():
        user_id, *values = features[transaction_id][:9]
        assert (user_id, *[None if value is None else float(value) for value in values]) == (
            expected[0],
            *[None if value is None else float(value) for value in expected[1:]],
        ), transaction_id
    # one currency, no FX rows at all: USD converts at 1
    assert features["txn-000125"][9] == Decimal("20")
    assert features["txn-000400"][9] == Decimal("12.34")
    # age 'forty' (text in an INTEGER column) is not an age: imputed; no chargebacks: no fraud
    assert features["txn-000201"][10] is True and features["txn-000301"][10] is False
    assert {row[11:] for row in features.values()} == {(False, True)}
    assert space.query("select count(*) from marts.training_set") == [(29,)]


def test_only_the_bad_rows_are_quarantined_each_with_its_reason(own_data_warehouse: Workspace) -> None:
    quarantined = own_data_warehouse.query(
        "select transaction_id, rejection_rule, rejection_reason from intermediate.int_transactions_validated "
        "where rejection_rule is not null order by transaction_id"
    )
    assert quarantined == [
        ("txn-000900", "unknown_user", "user_id u-9999 is not a known user"),
        ("txn-000901", "missing_fx_rate", "no EUR rate on or before 1997-01-11"),
    ]
    users = own_data_warehouse.query("select user_id from intermediate.int_users_cleaned order by user_id")
    assert [row[0] for row in users] == sorted(user for user, *_ in USERS)


def test_the_demo_integer_ids_become_their_decimal_text(built_warehouse: Warehouse) -> None:
    """Integer ids (the demo's) are the same ids as text: every feature row is a raw row's id."""
    types = built_warehouse.query(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'marts' and table_name = 'fct_transaction_features' "
        "and column_name in ('transaction_id', 'user_id') order by column_name"
    )
    assert types == [("transaction_id", "VARCHAR"), ("user_id", "VARCHAR")]
    [(rows, unmatched)] = built_warehouse.query(
        "select count(*), count(*) filter (where raw.transaction_id is null) "
        "from marts.fct_transaction_features as features "
        "left join (select distinct transaction_id, user_id from raw_app.transactions) as raw "
        "on features.transaction_id = cast(raw.transaction_id as varchar) "
        "and features.user_id = cast(raw.user_id as varchar)"
    )
    assert rows > 2000 and unmatched == 0


# the tables a build continues (incremental models, the snapshot) and their keys
KEPT_TABLES = {
    "intermediate.int_transactions_validated": ("transaction_id", "user_id"),
    "intermediate.int_events_validated": ("user_id",),
    "intermediate.int_transactions_windowed": ("transaction_id", "user_id"),
    "marts_audit.user_daily_features": ("user_id",),
    "snapshots.users_snapshot": ("user_id",),
}


def test_a_warehouse_built_with_integer_keys_continues_with_text_keys(warehouse_copy: Warehouse) -> None:
    """A warehouse built before keys were text: its kept tables' keys become text on the next build."""
    gold = "marts.fct_transaction_features"
    expected = table_hash(warehouse_copy.duckdb_path, gold)
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        for table, keys in KEPT_TABLES.items():
            for key in keys:
                connection.execute(f"alter table {table} alter column {key} type bigint")
    build = run_dbt(["build"], dbt_vars={"run_date": DEMO_RUN_DATE}, quiet=True)
    assert build.success, build.failures
    for table, keys in KEPT_TABLES.items():
        schema, name = table.split(".")
        columns = ", ".join(f"'{key}'" for key in keys)
        types = warehouse_copy.query(
            "select data_type from information_schema.columns "
            f"where table_schema = '{schema}' and table_name = '{name}' and column_name in ({columns})"
        )
        assert types == [("VARCHAR",)] * len(keys), table
    assert table_hash(warehouse_copy.duckdb_path, gold) == expected
