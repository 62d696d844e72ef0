"""App database source against a real PostgreSQL server on 127.0.0.1, through both Arrow backends.

The demo's SQLite tables are copied into PostgreSQL; the source loads them from a plain
`postgresql://` URL given in configuration. Then rows are updated and inserted in PostgreSQL and
a column is added: the next run reads only those rows, merges them over their old versions and
the raw table gains the column.
"""

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from extract_support import REPO_ROOT, Workspace, cli_environment, workspace
from postgres_server import copy_sqlite, create_database, postgres_server

from demo.generate import generate
from extract.app_database import with_installed_driver
from extract.load import load_source

TRANSACTION_COLUMNS = "transaction_id, user_id, amount, currency, status, device_type, created_at, updated_at"
LATER = "2027-01-01 00:00:00"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def demo_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pg-demo")
    generate(out, seed=13, scale=1_500, as_of=date(2026, 5, 1))
    return out / "app.sqlite"


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(with_installed_driver(sa.engine.make_url(url)))
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))
    engine.dispose()


def fetch(url: str, sql: str) -> Counter[tuple]:
    engine = sa.create_engine(with_installed_driver(sa.engine.make_url(url)))
    with engine.connect() as connection:
        rows = Counter(tuple(row) for row in connection.execute(sa.text(sql)))
    engine.dispose()
    return rows


def point_app_at(monkeypatch: pytest.MonkeyPatch, url: str, backend: str) -> None:
    monkeypatch.setenv("SOURCES__APP_DATABASE__DEMO", "false")
    monkeypatch.setenv("SOURCES__APP_DATABASE__CREDENTIALS", url)
    monkeypatch.setenv("SOURCES__APP_DATABASE__BACKEND", backend)


def raw(space: Workspace) -> Counter[tuple]:
    """The raw rows with their multiplicity (the source's exact duplicates are kept for staging)."""
    return Counter(space.query(f"select {TRANSACTION_COLUMNS} from raw_app.transactions"))


@pytest.mark.parametrize("backend", ["connectorx", "pyarrow"])
def test_postgres_tables_load_incrementally_and_merge(
    backend: str, server: str, demo_sqlite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    url = create_database(server, f"app_{backend}")
    copy_sqlite(demo_sqlite, url)
    point_app_at(monkeypatch, url, backend)

    first = load_source("app")
    expected = fetch(url, f"select {TRANSACTION_COLUMNS} from transactions")
    assert raw(space) == expected
    [(rows,)] = space.query("select count(*) from raw_app.transactions")
    [(source_rows, source_ids)] = fetch(url, "select count(*), count(distinct transaction_id) from transactions")
    assert first.rows["transactions"] == rows == source_rows  # every row, exact duplicates included
    assert source_rows > source_ids, "the demo holds exact duplicates"

    execute(
        url,
        f"update transactions set status = 'refunded', updated_at = '{LATER}' where transaction_id <= 5",
        f"insert into transactions values (999999, 1, 'N/A', 'EUR', 'pending', 'mobile', '{LATER}', '{LATER}')",
        "alter table users add column loyalty_tier text",
        f"update users set loyalty_tier = 'gold', updated_at = '{LATER}' where user_id in (1, 2)",
    )
    second = load_source("app")
    assert second.rows == {"transactions": 6, "users": 2}
    assert raw(space) == fetch(url, f"select {TRANSACTION_COLUMNS} from transactions")
    assert space.query("select count(*) from raw_app.transactions where status = 'refunded' and transaction_id <= 5")
    [(rows_after,)] = space.query("select count(*) from raw_app.transactions")
    assert rows_after == rows + 1
    assert space.query("select user_id, loyalty_tier from raw_app.users where loyalty_tier is not null order by 1") == [
        (1, "gold"),
        (2, "gold"),
    ]


def test_wrong_password_is_one_line_naming_the_setting(server: str, tmp_path: Path) -> None:
    """Through the real CLI: exit 1, one line on stderr naming the source and the setting, no password."""
    space = Workspace(tmp_path)
    wrong = sa.engine.make_url(server).set(password="wrong-password").render_as_string(hide_password=False)
    completed = subprocess.run(
        [sys.executable, "-m", "extract", "--sources", "app"],
        cwd=REPO_ROOT,
        env=cli_environment(space, SOURCES__APP_DATABASE__DEMO="false", SOURCES__APP_DATABASE__CREDENTIALS=wrong),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert lines[0].startswith("extract failed: app:") and "sources.app_database.credentials" in lines[0]
    assert "password authentication failed" in lines[0] and "wrong-password" not in lines[0]


@pytest.mark.parametrize("backend", ["connectorx", "pyarrow"])
def test_a_timestamptz_cursor_is_bounded_by_the_clock_and_looks_back(
    backend: str, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app window with a real timestamp column (the SQLite demo's is text): a row dated 2099
    loads without stopping a later one, a correction backdated within the lookback loads, a rerun
    loads nothing."""
    space = workspace(tmp_path, monkeypatch)
    url = create_database(server, f"app_timestamps_{backend}")
    columns = "user_id, amount, currency, status, device_type, created_at"
    execute(
        url,
        "create table users (user_id bigint, name text, email text, age integer, country text, "
        "signup_at timestamptz, updated_at timestamptz)",
        "create table transactions (transaction_id bigint, user_id bigint, amount numeric(12, 2), currency text, "
        "status text, device_type text, created_at timestamptz, updated_at timestamptz)",
        "insert into users values (1, 'a', 'a@example.com', 30, 'US', now() - interval '2 days', "
        "now() - interval '2 days')",
        f"insert into transactions (transaction_id, {columns}, updated_at) values "
        "(1, 1, 10.00, 'USD', 'pending', 'mobile', now() - interval '1 hour', now() - interval '1 hour'), "
        "(2, 1, 10.00, 'USD', 'pending', 'mobile', now(), timestamptz '2099-01-01 00:00:00+00')",
    )
    point_app_at(monkeypatch, url, backend)
    first = load_source("app")
    assert first.rows == {"transactions": 2, "users": 1}
    assert "transactions: 1 row(s) with updated_at after now" in first.describe()
    execute(
        url,
        f"insert into transactions (transaction_id, {columns}, updated_at) values "
        "(3, 1, 5.00, 'USD', 'pending', 'mobile', now(), now() - interval '10 minutes')",
        "update transactions set status = 'refunded', updated_at = now() - interval '70 minutes' "
        "where transaction_id = 1",
    )
    second = load_source("app")
    assert second.rows == {"transactions": 2}, second.describe()
    assert load_source("app").rows == {}
    assert space.query("select transaction_id, status from raw_app.transactions order by 1") == [
        (1, "refunded"),
        (2, "pending"),
        (3, "pending"),
    ]
