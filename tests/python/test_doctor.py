"""`pipeline doctor` checks each source through the settings extract reads, names each problem's
setting (and environment variable) or data fix, and exits 1 when a run would fail or produce nothing."""

import contextlib
import io
import sqlite3
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import demo_environment

from demo.fx_api_server import FxApiServer
from demo.generate import generate
from extract.app_database import CONTRACT_COLUMNS
from pipeline.cli import main

OWN_DATA_ONLY = {
    "SOURCES__APP_DATABASE__DEMO": "false",
    "SOURCES__EVENT_STREAM__ENABLED": "false",
    "SOURCES__BUCKET_FILES__ENABLED": "false",
    "SOURCES__FX_API__ENABLED": "false",
}


def doctor() -> tuple[int, str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(["doctor"])
    return code, output.getvalue()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in demo_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    return tmp_path


def app_database(path: Path, currency: str = "USD", drop: str = "") -> Path:
    """A contract-shaped SQLite app database: 3 users, 6 transactions with text ids in `currency`,
    without the transactions column `drop`."""
    columns = [name for name in CONTRACT_COLUMNS["transactions"] if name != drop]
    with sqlite3.connect(path) as connection:
        connection.execute(f"create table users ({', '.join(CONTRACT_COLUMNS['users'])})")
        connection.executemany(
            "insert into users values (?, ?, ?, ?, ?, ?, ?)",
            [(f"u-{n}", "A", "a@x", 30, "US", "1997-01-01", "1997-01-01") for n in range(3)],
        )
        connection.execute(f"create table transactions ({', '.join(columns)})")
        values = {
            "transaction_id": "t-{n}",
            "user_id": "u-1",
            "amount": "12.50",
            "currency": currency,
            "status": "completed",
            "device_type": "desktop",
            "created_at": "1997-03-0{n} 10:00:00",
            "updated_at": "1997-03-0{n} 10:00:00",
        }
        connection.executemany(
            f"insert into transactions values ({', '.join('?' * len(columns))})",
            [[values[name].format(n=n + 1) for name in columns] for n in range(6)],
        )
    return path


def own_data(monkeypatch: pytest.MonkeyPatch, database: Path) -> None:
    for key, value in OWN_DATA_ONLY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCES__APP_DATABASE__CREDENTIALS", f"sqlite:///{database}")


def test_the_demo_passes(data_dir: Path) -> None:
    generate(data_dir / "demo", seed=3, scale=300)
    code, output = doctor()
    assert code == 0, output
    assert "ERROR" not in output
    for line in (
        "tables users, transactions have the raw contract's columns",
        "demo rates for AUD, CAD, EUR, GBP, USD",
        "doctor: no errors",
        # the demo's deliberate bad records, found on the sample and named with an example
        "sampled amounts are not numbers (e.g. ",
        "value(s) not timestamps, left out)",
        "would be quarantined as missing_fx_rate",
        "fix: serve rates for XYZ from the FX source, or correct these currency codes at the source",
    ):
        assert line in output, line
    assert output.count("file(s) under ") == 2  # events and chargebacks


def test_the_demo_not_generated_says_make_demo_data(data_dir: Path) -> None:
    code, output = doctor()
    assert code == 1
    assert f"but {data_dir / 'demo' / 'app.sqlite'} was not generated" in output
    assert "run `make demo-data`, or set sources.app_database.demo = false" in output


def test_a_missing_column_is_named(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_data(monkeypatch, app_database(data_dir / "app.sqlite", drop="amount"))
    code, output = doctor()
    assert code == 1
    assert "ERROR    table transactions lacks the raw contract's column(s) amount" in output
    assert f"add or rename them: transactions({', '.join(CONTRACT_COLUMNS['transactions'])})" in output


def test_a_folder_that_does_not_exist_names_the_setting(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_data(monkeypatch, app_database(data_dir / "app.sqlite"))
    monkeypatch.setenv("SOURCES__BUCKET_FILES__ENABLED", "true")
    monkeypatch.setenv("SOURCES__BUCKET_FILES__DEMO", "false")
    monkeypatch.setenv("SOURCES__BUCKET_FILES__BUCKET_URL", str(data_dir / "no-such-folder"))
    code, output = doctor()
    assert code == 1
    assert f"setting sources.bucket_files.bucket_url = '{data_dir / 'no-such-folder'}': no such folder" in output
    assert "set sources.bucket_files.bucket_url (env SOURCES__BUCKET_FILES__BUCKET_URL)" in output
    assert "set sources.bucket_files.enabled = false (env SOURCES__BUCKET_FILES__ENABLED=false)" in output

    # an empty folder: the raw table would never exist
    (data_dir / "no-such-folder").mkdir()
    code, output = doctor()
    assert code == 1 and "no files under " in output and "the raw chargebacks table would not exist" in output


def test_a_currency_without_a_rate_names_it_and_both_fixes(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_data(monkeypatch, app_database(data_dir / "app.sqlite", currency=" eur"))
    code, output = doctor()
    assert code == 1, output  # every transaction would be quarantined
    assert "no rate for EUR (6 transactions): 6 of 6 transactions would be quarantined as missing_fx_rate" in output
    assert (
        "turn the FX source on with rates for EUR (sources.fx_api.enabled = true (env SOURCES__FX_API__ENABLED=true)"
        in output
    )
    assert "or set the dbt var reporting_currency to EUR" in output


def test_own_data_in_the_reporting_currency_passes(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_data(monkeypatch, app_database(data_dir / "app.sqlite"))
    code, output = doctor()
    assert code == 0, output
    assert "rows: users 3, transactions 6" in output
    assert "transactions created_at from 1997-03-01 10:00:00 UTC to 1997-03-06 10:00:00 UTC" in output
    assert "turned off (sources.fx_api.enabled = false (env SOURCES__FX_API__ENABLED=false))" in output


def test_every_sampled_id_missing_fails(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = app_database(data_dir / "app.sqlite")
    with sqlite3.connect(database) as connection:
        connection.execute("update transactions set transaction_id = ' '")
    own_data(monkeypatch, database)
    code, output = doctor()
    assert code == 1
    assert "every sampled transaction (6) has no transaction_id: all would be quarantined as missing_key" in output


def test_the_fx_api_is_asked_with_the_token(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own_data(monkeypatch, app_database(data_dir / "app.sqlite", currency="EUR"))
    rates = data_dir / "rates.parquet"
    pq.write_table(
        pa.table({"date": pa.array([date(1997, 1, 1)], pa.date32()), "currency": ["EUR"], "rate_to_usd": [1.1]}), rates
    )
    with FxApiServer(rates, token="right") as server:
        monkeypatch.setenv("SOURCES__FX_API__ENABLED", "true")
        monkeypatch.setenv("SOURCES__FX_API__DEMO", "false")
        monkeypatch.setenv("SOURCES__FX_API__BASE_URL", server.start())
        monkeypatch.setenv("SOURCES__FX_API__TOKEN", "wrong")
        code, output = doctor()
        assert code == 1
        assert (
            "the FX API refused the token (401)" in output
            and "set sources.fx_api.token (env SOURCES__FX_API__TOKEN)" in output
        )
        monkeypatch.setenv("SOURCES__FX_API__TOKEN", "right")
        code, output = doctor()
    assert code == 0, output
    assert "the FX API answers with the token; rates for EUR" in output
    assert "every transaction currency has a rate or is the reporting currency USD" in output
