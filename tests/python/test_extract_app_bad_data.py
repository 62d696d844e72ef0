"""App database source under bad and skewed data, against small real SQLite files (issue 21).

A future `updated_at` must not stop later rows; a backdated correction within the lookback loads;
a row without `updated_at` or without a key loads with the rest; two versions of a key with the
same `updated_at` both reach raw; a table without a contract column fails in one line; values
ConnectorX cannot convert are kept as text instead of a Rust panic.
"""

import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dlt
import pytest
from dlt.sources.sql_database import sql_table
from extract_support import REPO_ROOT, Workspace, cli_environment, table_fingerprint, workspace

from extract.arrow_rows import random_prefix, with_row_ids
from extract.load import ExtractError, load_source, make_pipeline

TRANSACTION_COLUMNS = "transaction_id, user_id, amount, currency, status, device_type, created_at, updated_at"
USER_COLUMNS = "user_id, name, email, age, country, signup_at, updated_at"
TRANSACTIONS_DDL = (
    "CREATE TABLE transactions (transaction_id INTEGER, user_id INTEGER, amount TEXT, currency TEXT, "
    "status TEXT, device_type TEXT, created_at TEXT, updated_at TEXT)"
)
USERS_DDL = (
    "CREATE TABLE users (user_id INTEGER, name TEXT, email TEXT, age INTEGER, country TEXT, signup_at TEXT, "
    "updated_at TEXT)"
)
DAY = "2026-11-01"


def transaction(key: int | None, updated_at: object, status: str = "completed", user_id: object = 1) -> tuple:
    return (key, user_id, "10.00", "USD", status, "mobile", f"{DAY} 12:00:00", updated_at)


def make_app(path: Path, transactions: list[tuple], transactions_ddl: str = TRANSACTIONS_DDL) -> Path:
    """A SQLite app database with two users and the given transactions."""
    with sqlite3.connect(path) as connection:
        connection.execute(USERS_DDL)
        connection.execute(transactions_ddl)
        connection.executemany(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (user, f"user {user}", f"u{user}@example.com", 30, "US", f"{DAY} 00:00:00", f"{DAY} 00:00:00")
                for user in (1, 2)
            ],
        )
        insert(path, transactions, connection)
    return path


def insert(path: Path, transactions: list[tuple], connection: sqlite3.Connection | None = None) -> None:
    with connection or sqlite3.connect(path) as open_connection:
        columns = open_connection.execute("select * from transactions limit 0").description
        marks = ", ".join("?" * len(columns))
        open_connection.executemany(f"INSERT INTO transactions VALUES ({marks})", transactions)


def execute(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(sql)


def point_app_at(monkeypatch: pytest.MonkeyPatch, app: Path, **settings: str) -> None:
    monkeypatch.setenv("SOURCES__APP_DATABASE__DEMO", "false")
    monkeypatch.setenv("SOURCES__APP_DATABASE__CREDENTIALS", f"sqlite:///{app}")
    for key, value in settings.items():
        monkeypatch.setenv(f"SOURCES__APP_DATABASE__{key.upper()}", value)


def source_transactions(app: Path) -> Counter[tuple]:
    with sqlite3.connect(app) as connection:
        return Counter(connection.execute(f"select {TRANSACTION_COLUMNS} from transactions").fetchall())


def raw_transactions(space: Workspace) -> Counter[tuple]:
    return Counter(space.query(f"select {TRANSACTION_COLUMNS} from raw_app.transactions"))


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return workspace(tmp_path, monkeypatch)


def minutes_ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def test_a_future_updated_at_does_not_stop_later_rows(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's repro: a row dated 2099, then a normal one; both arrive and the output says why
    the first does not move the cursor."""
    app = make_app(tmp_path / "app.sqlite", [transaction(1, f"{DAY} 12:00:00")])
    point_app_at(monkeypatch, app)
    load_source("app")
    insert(app, [transaction(910005, "2099-01-01 00:00:00")])
    future = load_source("app")
    assert future.rows == {"transactions": 1}
    assert "1 row(s) with updated_at after now + 300 s (latest 2099-01-01 00:00:00) held back" in future.describe()
    insert(app, [transaction(910006, f"{DAY} 13:00:00")])
    later = load_source("app")
    assert later.rows == {"transactions": 1}, later.describe()
    assert raw_transactions(space) == source_transactions(app)
    assert "held back from the cursor" in later.describe()  # said again while the row is ahead of the clock


def test_a_correction_backdated_within_the_lookback_loads(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update whose updated_at is earlier than the last loaded one (another app server's clock)."""
    app = make_app(tmp_path / "app.sqlite", [transaction(1, minutes_ago(30)), transaction(2, minutes_ago(5))])
    point_app_at(monkeypatch, app)
    load_source("app")
    execute(
        app, f"update transactions set status = 'refunded', updated_at = '{minutes_ago(20)}' where transaction_id = 1"
    )
    corrected = load_source("app")
    assert corrected.rows == {"transactions": 1}, corrected.describe()
    assert raw_transactions(space) == source_transactions(app)


def test_rereading_the_lookback_window_leaves_raw_unchanged(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun loads nothing; a rerun whose lookback reaches every row reads them all again and the
    merge (delete-insert on the key) leaves raw's content exactly as it was."""
    rows = [transaction(key, minutes_ago(100 - key), status=("pending", "completed")[key % 2]) for key in range(1, 41)]
    rows += [transaction(None, minutes_ago(3)), transaction(7, minutes_ago(93), status="pending")]  # no key; 2 of 7
    app = make_app(tmp_path / "app.sqlite", rows)
    point_app_at(monkeypatch, app)
    load_source("app")
    before = table_fingerprint(space, "raw_app.transactions")
    assert before[0] == len(rows)
    assert load_source("app").rows == {}
    assert table_fingerprint(space, "raw_app.transactions") == before
    monkeypatch.setenv("SOURCES__APP_DATABASE__LOOKBACK_SECONDS", str(10 * 24 * 3600))
    reread = load_source("app")
    assert reread.rows["transactions"] >= 35, reread.describe()  # all but the rows of the first window
    assert table_fingerprint(space, "raw_app.transactions") == before


def test_a_row_without_updated_at_loads_with_the_rest(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlt's incremental raised (`on_cursor_value_missing`); the row is loaded, once, and counted."""
    app = make_app(tmp_path / "app.sqlite", [transaction(1, f"{DAY} 12:00:00"), transaction(2, None)])
    point_app_at(monkeypatch, app)
    first = load_source("app")
    assert first.rows == {"transactions": 2, "users": 2}
    assert "transactions: 1 row(s) without updated_at: in raw, cursor unmoved" in first.describe()
    assert raw_transactions(space) == source_transactions(app)
    again = load_source("app")
    assert again.rows == {}, again.describe()
    assert raw_transactions(space) == source_transactions(app)


def test_rows_without_a_key_all_reach_raw_once(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rows without transaction_id became one (dlt deduplicated on the key); read again (they
    are in the lookback), they must not be stored twice either (the merge cannot match a null key)."""
    rows = [
        transaction(1, minutes_ago(9)),
        transaction(None, minutes_ago(8)),
        transaction(None, minutes_ago(7), "failed"),
    ]
    app = make_app(tmp_path / "app.sqlite", rows)
    point_app_at(monkeypatch, app)
    load_source("app")
    assert raw_transactions(space) == source_transactions(app)
    insert(app, [transaction(None, minutes_ago(6), "pending"), transaction(3, minutes_ago(5))])
    assert load_source("app").rows == {"transactions": 2}
    assert load_source("app").rows == {}
    assert raw_transactions(space) == source_transactions(app)
    [(missing,)] = space.query("select count(*) from raw_app.transactions where transaction_id is null")
    assert missing == 3


def test_two_versions_with_the_same_updated_at_both_reach_raw(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlt kept one of them at random; both are kept for staging, whose rule is documented (the latest
    updated_at, then the latest load, then the first read: row ids sort in read order)."""
    same = f"{DAY} 12:00:00"
    app = make_app(tmp_path / "app.sqlite", [transaction(5, same, "pending"), transaction(5, same, "refunded")])
    point_app_at(monkeypatch, app, chunk_size="1")
    load_source("app")
    assert raw_transactions(space) == source_transactions(app)
    in_id_order = space.query("select status from raw_app.transactions order by _dlt_id")
    assert in_id_order == [("pending",), ("refunded",)]  # the first read (SQLite rowid order) sorts first


def test_a_warehouse_the_earlier_source_loaded_stops_merging_on_a_primary_key(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earlier source (below, as it was) declared transaction_id the primary key; dlt keeps that
    hint in the stored schema unless it is removed, and would go on collapsing rows without a key
    (and delete on either key, a join that takes minutes at 10M rows)."""
    app = make_app(tmp_path / "app.sqlite", [transaction(1, f"{DAY} 12:00:00")])
    point_app_at(monkeypatch, app)

    @dlt.source(name="app")
    def earlier_source() -> list:
        resource = sql_table(
            credentials=f"sqlite:///{app}",
            table="transactions",
            backend="pyarrow",
            incremental=dlt.sources.incremental("updated_at"),
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            primary_key="transaction_id",
        )
        return [resource.add_map(lambda table: with_row_ids(table, random_prefix()))]

    make_pipeline("app", "duckdb").run(earlier_source())
    insert(app, [transaction(None, f"{DAY} 13:00:00"), transaction(None, f"{DAY} 13:00:00", "failed")])
    load_source("app")
    assert raw_transactions(space) == source_transactions(app)
    stored = make_pipeline("app", "duckdb").default_schema.tables["transactions"]["columns"]["transaction_id"]
    assert not stored.get("primary_key") and stored.get("merge_key")


def run_cli(space: Workspace, app: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {f"SOURCES__APP_DATABASE__{key.upper()}": value for key, value in settings.items()}
    return subprocess.run(
        [sys.executable, "-m", "extract", "--sources", "app"],
        cwd=REPO_ROOT,
        env=cli_environment(
            space,
            SOURCES__APP_DATABASE__DEMO="false",
            SOURCES__APP_DATABASE__CREDENTIALS=f"sqlite:///{app}",
            **environment,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_table_without_a_contract_column_fails_in_one_line(tmp_path: Path) -> None:
    """Loaded, its rows would be quarantined as `currency 'null' is not a known currency`: a schema
    break, not bad rows. users has no loyalty_tier here: an optional column may be absent."""
    ddl = TRANSACTIONS_DDL.replace(" currency TEXT,", "")
    app = make_app(
        tmp_path / "app.sqlite", [(1, 1, "10.00", "completed", "mobile", f"{DAY} 12:00:00", f"{DAY} 12:00:00")], ddl
    )
    completed = run_cli(Workspace(tmp_path / "ws"), app)
    assert completed.returncode == 1, completed.stdout
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert lines[0].startswith("extract failed: app:"), lines
    assert "table transactions lacks the raw contract's column(s) currency" in lines[0]


def test_a_numeric_updated_at_fails_in_one_line(tmp_path: Path) -> None:
    """The cursor compares timestamps: an epoch-seconds column would compare as a number against text
    and silently read nothing new (SQLite orders every number before any text)."""
    ddl = TRANSACTIONS_DDL.replace("updated_at TEXT", "updated_at INTEGER")
    app = make_app(tmp_path / "app.sqlite", [transaction(1, 1_790_000_000)], ddl)
    completed = run_cli(Workspace(tmp_path / "ws"), app)
    assert completed.returncode == 1, completed.stdout
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert "transactions.updated_at is a number (INTEGER)" in lines[0], lines


@pytest.mark.parametrize(
    ("backend", "transactions_error", "users_error"),
    [
        ("auto", "ConnectorX cannot read transactions.user_id (a Text value)", "ConnectorX cannot read users.name"),
        (
            "pyarrow",
            "SQLAlchemy cannot read transactions.user_id (Could not convert 'abc' with type str)",
            "SQLAlchemy cannot read users.name",
        ),
    ],
)
def test_values_the_backend_cannot_convert_are_kept_as_text(
    backend: str, transactions_error: str, users_error: str, tmp_path: Path
) -> None:
    """Text in an INTEGER column, a BLOB amount, invalid UTF-8 in users.name: ConnectorX panicked
    (a Rust panic, ~250 lines of traceback, exit 1), dlt's pyarrow backend raised. Now every row loads
    once, through the real CLI, with the bad values kept as text for staging to quarantine, and the
    output names them."""
    good = [transaction(key, f"{DAY} 12:{key:02d}:00") for key in range(1, 8)]
    app = make_app(tmp_path / "app.sqlite", good)
    insert(app, [transaction(8, f"{DAY} 13:00:00", user_id="abc")])
    insert(app, [(9, 2, b"\x00\x01", "USD", "completed", "mobile", f"{DAY} 12:00:00", f"{DAY} 13:01:00")])
    insert(app, [transaction(key, f"{DAY} 14:{key:02d}:00") for key in range(10, 14)])
    execute(
        app,
        "insert into users values (3, cast(x'4a6fe9' as text), 'j@example.com', 40, 'FR', '2026-11-01', '2026-11-01')",
    )
    space = Workspace(tmp_path / "ws")
    completed = run_cli(space, app, chunk_size="3", backend=backend)  # the bad rows come after the first batches
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr and "panicked" not in completed.stderr, completed.stderr
    assert transactions_error in completed.stdout, completed.stdout
    assert f"{users_error} (invalid UTF-8)" in completed.stdout, completed.stdout
    assert "amount 1, user_id 1" in completed.stdout, completed.stdout  # the values kept as text, per column
    [(rows, ids)] = space.query("select count(*), count(distinct transaction_id) from raw_app.transactions")
    assert rows == ids == 13
    assert space.query("select user_id, user_id__v_text from raw_app.transactions where transaction_id = 8") == [
        (None, "abc")
    ]
    assert space.query("select amount from raw_app.transactions where transaction_id = 9") == [("X'0001'",)]
    assert space.query("select name from raw_app.users where user_id = 3") == [("Jo\\xe9",)]
    assert space.query("select count(*) from raw_app.users") == [(3,)]


def test_text_in_a_numeric_column_is_kept_as_text(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`amount NUMERIC` holding 'N/A' (SQLite keeps text it cannot read as a number): the load failed
    whole with DuckDB's `Could not convert string "N/A" to DECIMAL(38,9)`. Now the other rows load
    with their amounts, and 'N/A' is kept in amount__v_text for staging to quarantine."""
    ddl = TRANSACTIONS_DDL.replace("amount TEXT", "amount NUMERIC")
    rows = [(1, 1, 12.5, "USD", "completed", "mobile", f"{DAY} 12:00:00", f"{DAY} 12:00:00")]
    rows.append((2, 1, "N/A", "USD", "completed", "mobile", f"{DAY} 12:00:00", f"{DAY} 12:01:00"))
    point_app_at(monkeypatch, make_app(tmp_path / "app.sqlite", rows, ddl))
    load = load_source("app")
    assert load.rows["transactions"] == 2
    assert sorted(space.query("select transaction_id, amount, amount__v_text from raw_app.transactions")) == [
        (1, Decimal("12.5"), None),
        (2, None, "N/A"),
    ]


def test_a_table_mostly_ahead_of_the_clock_fails_naming_the_setting(
    space: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many rows ahead of the clock is a wrong clock, not skew: one line, instead of remembering them all."""
    rows = [transaction(key, f"2099-01-01 00:00:{key:02d}") for key in range(1, 8)]
    app = make_app(tmp_path / "app.sqlite", rows)
    point_app_at(monkeypatch, app)
    monkeypatch.setattr("extract.app_window.MAX_ROWS_AHEAD", 5)
    with pytest.raises(ExtractError) as failed:
        load_source("app")
    message = str(failed.value)
    assert message.startswith("app: setting sources.app_database.max_clock_skew_seconds = 300 holds back more than 5")
    assert "latest 2099-01-01 00:00:07" in message and "\n" not in message
