"""The demo generator and the demo FX API, on real files at a small scale (no mocks)."""

import csv
import hashlib
import json
import os
import shutil
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import demo.generate
from demo.fx_api_server import FxApiServer
from demo.generate import generate, main

SCALE = 2_000
SEED = 42
TOKEN = "test-token"
EARLY = date(2026, 3, 15)  # before the loyalty launch (2026-05-26 for the default window)
LATE = date(2026, 7, 1)  # after it
LAUNCH = date(2026, 5, 26)


# ---------------------------------------------------------------------------------------------
# fixtures: each generated once per module


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, int]]]:
    """Output folder and returned counts of each generator run the tests compare."""
    runs = {
        "full": (SEED, None),
        "again": (SEED, None),
        "other_seed": (SEED + 1, None),
        "early": (SEED, EARLY),
        "late": (SEED, LATE),
    }
    results = {}
    for name, (seed, as_of) in runs.items():
        out = tmp_path_factory.mktemp(name)
        results[name] = (out, generate(out, seed=seed, scale=SCALE, as_of=as_of))
    return results


@pytest.fixture(scope="module")
def full(demo_runs: dict[str, tuple[Path, dict[str, int]]]) -> Path:
    return demo_runs["full"][0]


@pytest.fixture(scope="module")
def full_events(full: Path) -> pa.Table:
    return read_events(full)


def file_digests(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root, by relative path."""
    return {
        str(path.relative_to(root)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def query(out: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(out / "app.sqlite") as connection:
        return connection.execute(sql).fetchall()


def scalar(out: Path, sql: str) -> Any:
    return query(out, sql)[0][0]


def columns(out: Path, table: str) -> list[str]:
    return [row[1] for row in query(out, f"PRAGMA table_info({table})")]


def read_events(out: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(path) for path in sorted((out / "events").rglob("*.parquet"))])


def read_chargebacks(out: Path) -> list[dict[str, str]]:
    """Every chargeback line of every weekly file, values as text."""
    rows: list[dict[str, str]] = []
    for path in sorted((out / "bucket" / "chargebacks").rglob("chargebacks.*")):
        if path.suffix == ".csv":
            with path.open(newline="") as handle:
                rows += list(csv.DictReader(handle))
        elif path.suffix == ".jsonl":
            rows += [json.loads(line) for line in path.read_text().splitlines()]
        else:
            rows += pq.read_table(path).to_pylist()
    return [{key: str(value) for key, value in row.items()} for row in rows]


# ---------------------------------------------------------------------------------------------
# generator


def test_counts_match_the_files(demo_runs: dict[str, tuple[Path, dict[str, int]]], full_events: pa.Table) -> None:
    out, counts = demo_runs["full"]
    assert counts["users"] == scalar(out, "SELECT count(*) FROM users")
    assert counts["transactions"] == scalar(out, "SELECT count(*) FROM transactions")
    assert counts["events"] == full_events.num_rows
    assert counts["fx_rates"] == pq.read_table(out / "fx_rates.parquet").num_rows
    assert counts["chargebacks"] == len(read_chargebacks(out))
    distinct = scalar(out, "SELECT count(DISTINCT transaction_id) FROM transactions")
    assert 0.99 * SCALE <= distinct <= SCALE
    assert scalar(out, "SELECT count(DISTINCT user_id) FROM users") == max(50, SCALE // 20)
    assert 4 * SCALE <= counts["events"] <= 6 * SCALE


def test_same_seed_gives_identical_files(demo_runs: dict[str, tuple[Path, dict[str, int]]]) -> None:
    first, again = file_digests(demo_runs["full"][0]), file_digests(demo_runs["again"][0])
    assert first == again
    assert {"app.sqlite", "fx_rates.parquet"} <= set(first)


def test_another_seed_gives_other_data(demo_runs: dict[str, tuple[Path, dict[str, int]]]) -> None:
    first, other = file_digests(demo_runs["full"][0]), file_digests(demo_runs["other_seed"][0])
    assert first["app.sqlite"][0] != other["app.sqlite"][0]
    assert first["fx_rates.parquet"][0] != other["fx_rates.parquet"][0]
    shared = set(first) & set(other)
    assert any(first[name][0] != other[name][0] for name in shared if name.startswith("events"))


def test_as_of_holds_only_what_was_known(demo_runs: dict[str, tuple[Path, dict[str, int]]]) -> None:
    early, early_counts = demo_runs["early"]
    late, late_counts = demo_runs["late"]
    full_counts = demo_runs["full"][1]
    for table in full_counts:
        assert early_counts[table] < late_counts[table] <= full_counts[table], table
    assert "loyalty_tier" not in columns(early, "users")
    assert "loyalty_tier" in columns(late, "users")
    assert scalar(late, "SELECT count(*) FROM users WHERE loyalty_tier IS NOT NULL") > 0
    cutoff = (EARLY + timedelta(days=1)).isoformat()
    for table in ("users", "transactions"):
        assert scalar(early, f"SELECT max(updated_at) FROM {table}") < cutoff
    fx_dates = pq.read_table(early / "fx_rates.parquet").column("date").to_pylist()
    assert max(fx_dates) <= EARLY


def test_replay_files_are_the_same_as_later(demo_runs: dict[str, tuple[Path, dict[str, int]]]) -> None:
    """A closed event batch is the same file whatever the as-of day; later days only add files."""
    early, full = file_digests(demo_runs["early"][0]), file_digests(demo_runs["full"][0])
    early_events = {name: digest for name, digest in early.items() if name.startswith("events")}
    assert early_events
    assert all(full[name] == digest for name, digest in early_events.items())
    assert len([name for name in full if name.startswith("events")]) > len(early_events)


def test_transactions_change_after_insert(demo_runs: dict[str, tuple[Path, dict[str, int]]]) -> None:
    early, full = demo_runs["early"][0], demo_runs["full"][0]
    before = dict(query(early, "SELECT transaction_id, status FROM transactions"))
    after = dict(query(full, "SELECT transaction_id, status FROM transactions"))
    changed = [tid for tid, status in before.items() if after[tid] != status]
    assert changed and all(before[tid] in ("pending", "completed") for tid in changed)
    statuses = {row[0] for row in query(full, "SELECT DISTINCT status FROM transactions")}
    assert statuses == {"pending", "completed", "failed", "refunded"}
    # late-arriving: first written hours after the business time
    late = "status = 'pending' AND updated_at > datetime(created_at, '+1 hour')"
    assert scalar(full, f"SELECT count(*) FROM transactions WHERE {late}") > 0


def test_event_and_chargeback_file_times(full: Path) -> None:
    for path in (full / "events").rglob("*.parquet"):
        day = path.parent.name.removeprefix("date=")
        hour = int(path.stem.removeprefix("batch-"))
        window_end = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC) + timedelta(hours=6)
        assert path.stat().st_mtime == window_end.timestamp()
    extensions = set()
    for path in (full / "bucket" / "chargebacks").rglob("chargebacks.*"):
        monday = date.fromisoformat(path.parent.name.removeprefix("reported_date="))
        assert monday.weekday() == 0
        week_end = datetime(monday.year, monday.month, monday.day, tzinfo=UTC) + timedelta(days=7)
        assert path.stat().st_mtime == min(week_end, datetime(2026, 9, 1, tzinfo=UTC)).timestamp()
        extensions.add(path.suffix)
    assert extensions == {".csv", ".jsonl", ".parquet"}


def test_defects_are_present(full: Path, full_events: pa.Table) -> None:
    def count(where: str, table: str = "transactions") -> int:
        return scalar(full, f"SELECT count(*) FROM {table} WHERE {where}")

    duplicates = "SELECT count(*) - count(DISTINCT {key}) FROM (SELECT DISTINCT * FROM {table})"
    assert scalar(full, duplicates.format(key="transaction_id", table="transactions")) == 0, "only exact dups"
    assert scalar(full, "SELECT count(*) - count(DISTINCT transaction_id) FROM transactions") > 0
    assert scalar(full, "SELECT count(*) - count(DISTINCT user_id) FROM users") > 0
    assert count("user_id NOT IN (SELECT user_id FROM users)") > 0
    assert count("amount LIKE '-%'") > 0
    assert count("amount IN ('N/A', 'abc', 'n/a', '--', '') OR amount LIKE '%,%'") > 0
    assert count("currency NOT IN ('USD', 'EUR', 'GBP', 'CAD', 'AUD')") > 0
    assert count("CAST(amount AS REAL) > 50 * (SELECT avg(CAST(amount AS REAL)) FROM transactions)") > 0
    assert count("device_type IS NULL") > 0
    assert count("device_type <> lower(trim(device_type))") > 0
    assert count("created_at LIKE '%Z'") > 0
    assert count("created_at LIKE '%+__:__' OR created_at LIKE '%T%-__:__'") > 0
    assert count("created_at NOT GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]*' OR created_at LIKE '%-13-%'") > 0
    assert count("age IS NULL", "users") > 0
    assert count("age < 0 OR age > 120", "users") > 0
    assert count("country IS NULL OR country IN ('XX', 'Narnia')", "users") > 0
    assert count("name <> trim(name) OR email <> lower(trim(email))", "users") > 0
    assert full_events.num_rows - len(set(full_events.column("event_id").to_pylist())) > 0


def test_amounts_are_mostly_clean_text(full: Path) -> None:
    amounts = [row[0] for row in query(full, "SELECT amount FROM transactions")]
    parsed = [float(a) for a in amounts if a.replace(".", "", 1).lstrip("-").isdigit()]
    assert len(parsed) >= 0.99 * len(amounts)
    assert all(len(a.split(".")[1]) == 2 for a in amounts if "." in a)
    assert 5 < sorted(parsed)[len(parsed) // 2] < 500


def test_fraud_rate_is_realistic(full: Path) -> None:
    chargebacks = read_chargebacks(full)
    transactions = {row[0] for row in query(full, "SELECT transaction_id FROM transactions")}
    known = {int(row["transaction_id"]) for row in chargebacks} & transactions
    assert 0.005 <= len(known) / len(transactions) <= 0.03
    assert {row["reason"] for row in chargebacks} == {"fraud", "stolen_card", "not_recognised"}
    assert any(int(row["transaction_id"]) not in transactions for row in chargebacks), "unknown ids"


def test_fx_rates_are_business_days(full: Path) -> None:
    table = pq.read_table(full / "fx_rates.parquet")
    assert table.schema.field("date").type == pa.date32()
    rows = table.to_pylist()
    assert all(row["date"].weekday() < 5 for row in rows)
    assert {row["rate_to_usd"] for row in rows if row["currency"] == "USD"} == {1.0}
    eur = [row["rate_to_usd"] for row in rows if row["currency"] == "EUR"]
    assert 0.9 < min(eur) and max(eur) < 1.3
    assert rows[0]["date"] == date(2025, 12, 22)  # start - 10 days


def test_earlier_rerun_removes_later_files(tmp_path: Path) -> None:
    generate(tmp_path, seed=SEED, scale=200, as_of=date(2026, 2, 1))
    generate(tmp_path, seed=SEED, scale=200, as_of=date(2026, 1, 10))
    days = {path.parent.name for path in (tmp_path / "events").rglob("*.parquet")}
    assert days and max(days) <= "date=2026-01-10"


def folder_content(root: Path) -> dict[str, object]:
    """The app tables row by row (rowid order, column names included) and every other file's digest."""
    content: dict[str, object] = {name: digest for name, digest in file_digests(root).items() if name != "app.sqlite"}
    for table in ("users", "transactions"):
        content[f"app.sqlite:{table}"] = (
            columns(root, table),
            hashlib.sha256(repr(query(root, f"SELECT * FROM {table} ORDER BY rowid")).encode()).hexdigest(),
        )
    return content


def change_times(root: Path, pattern: str) -> dict[Path, int]:
    """st_ctime_ns of the files under root matching `pattern`: any write or utime moves it."""
    return {path: path.stat().st_ctime_ns for path in root.rglob(pattern)}


def test_a_later_day_appends_to_the_folder_and_equals_a_fresh_generation(
    demo_runs: dict[str, tuple[Path, dict[str, int]]], tmp_path: Path
) -> None:
    """Grown from EARLY to LATE a few days at a time (across the loyalty launch), the folder holds
    exactly what a fresh generation as of LATE holds; the files and rows already there stay put."""
    grown = tmp_path / "grown"
    shutil.copytree(demo_runs["early"][0], grown)  # copy2: the pinned mtimes come along
    closed_before = change_times(grown, "*.parquet")
    closed_before = {path: ctime for path, ctime in closed_before.items() if "events" in path.parts}
    rows_before = query(grown, "SELECT rowid, transaction_id, created_at FROM transactions ORDER BY rowid")
    statuses_before = dict(query(grown, "SELECT transaction_id, status FROM transactions"))

    counts = {}
    for day in (LAUNCH - timedelta(days=1), LAUNCH, LATE):
        counts = generate(grown, seed=SEED, scale=SCALE, as_of=day)
        assert ("loyalty_tier" in columns(grown, "users")) == (day >= LAUNCH)
    assert counts == demo_runs["late"][1]
    assert folder_content(grown) == folder_content(demo_runs["late"][0])

    # appended, not rewritten: earlier event batches untouched, earlier rows keep their place
    assert closed_before and change_times(grown, "*.parquet").items() >= closed_before.items()
    rows_after = query(grown, "SELECT rowid, transaction_id, created_at FROM transactions ORDER BY rowid")
    assert rows_after[: len(rows_before)] == rows_before and len(rows_after) > len(rows_before)
    # ... while rows written before changed in place (status updates after insert)
    statuses_after = dict(query(grown, "SELECT transaction_id, status FROM transactions"))
    assert any(statuses_after[tid] != status for tid, status in statuses_before.items())


def test_a_damaged_or_unfinished_folder_is_written_afresh(tmp_path: Path) -> None:
    """A later day is only appended to a folder this generator finished with the same settings:
    after a hand edit of the app database, a deleted batch, a foreign file, an interrupted run or
    other settings, the folder is rewritten and equals a fresh generation."""
    fresh = tmp_path / "fresh"
    generate(fresh, seed=SEED, scale=500, as_of=date(2026, 2, 10))
    expected = folder_content(fresh)

    def grown(damage: str) -> Path:
        folder = tmp_path / damage
        generate(folder, seed=SEED if damage != "other_seed" else SEED + 1, scale=500, as_of=date(2026, 2, 1))
        if damage == "edited_database":
            with sqlite3.connect(folder / "app.sqlite") as connection:
                connection.execute("UPDATE transactions SET amount = '0.00' WHERE rowid = 1")
            connection.close()
        elif damage == "deleted_batch":
            sorted((folder / "events").rglob("*.parquet"))[3].unlink()
        elif damage == "foreign_file":
            (folder / "events" / "date=2026-01-05" / "stray.parquet").write_bytes(b"not parquet")
        elif damage == "interrupted":
            (folder / ".generate.json").unlink()
        generate(folder, seed=SEED, scale=500, as_of=date(2026, 2, 10))
        return folder

    for damage in ("edited_database", "deleted_batch", "foreign_file", "interrupted", "other_seed"):
        assert folder_content(grown(damage)) == expected, damage


def test_chunked_rendering_gives_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are rendered and inserted CHUNK_ROWS at a time, per-event random numbers drawn DRAW_CHUNK
    at a time: the chunk sizes change nothing (numpy's generators give the same stream in chunks)."""
    generate(tmp_path / "default", seed=SEED, scale=800, as_of=LATE)
    monkeypatch.setattr(demo.generate, "CHUNK_ROWS", 7)
    monkeypatch.setattr(demo.generate, "DRAW_CHUNK", 997)
    generate(tmp_path / "small_chunks", seed=SEED, scale=800, as_of=LATE)
    assert folder_content(tmp_path / "small_chunks") == folder_content(tmp_path / "default")


def test_cli_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--seed", "1", "--scale", "100", "--as-of", "2026-01-31"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "users",
        "transactions",
        "events",
        "fx_rates",
        "chargebacks",
    ]
    assert all(int(line.split()[1]) >= 0 for line in lines)


# ---------------------------------------------------------------------------------------------
# FX API server


def get(url: str, token: str | None = TOKEN) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and JSON body of a GET, for error answers too."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def api(full: Path) -> Iterator[str]:
    with FxApiServer(full / "fx_rates.parquet", token=TOKEN) as server:
        yield server.start()


def expected_rates(path: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(path).to_pylist()
    rows = [{**row, "date": row["date"].isoformat()} for row in rows]
    return sorted(rows, key=lambda row: (row["date"], row["currency"]))


def test_api_pages_through_every_row_once(api: str, full: Path) -> None:
    rows, page, pages_seen = [], 1, 0
    while page is not None:
        status, _, body = get(f"{api}/v1/rates?page={page}&page_size=100")
        assert status == 200 and body["page"] == page and body["page_size"] == 100
        rows += body["data"]
        pages_seen += 1
        page = body["next_page"]
    assert rows == expected_rates(full / "fx_rates.parquet")
    assert pages_seen == body["total_pages"] == -(-len(rows) // 100)


def test_api_filters_on_start_date(api: str, full: Path) -> None:
    status, _, body = get(f"{api}/v1/rates?start_date=2026-08-03&page_size=1000")
    assert status == 200
    expected = [row for row in expected_rates(full / "fx_rates.parquet") if row["date"] >= "2026-08-03"]
    assert body["data"] == expected and body["next_page"] is None


def test_api_requires_the_token(api: str) -> None:
    assert get(f"{api}/v1/rates", token=None)[0] == 401
    status, _, body = get(f"{api}/v1/rates", token="wrong")
    assert status == 401 and "error" in body
    assert get(f"{api}/v1/rates?page=0")[0] == 400
    assert get(f"{api}/v1/other")[0] == 404


def test_api_fails_on_schedule(full: Path) -> None:
    with FxApiServer(full / "fx_rates.parquet", token=TOKEN, fail_every=3) as server:
        answers = [get(f"{server.start()}/v1/rates?page_size=5") for _ in range(9)]
        assert server.request_count == 9
    assert [status for status, _, _ in answers] == [200, 200, 503, 200, 200, 429, 200, 200, 503]
    assert answers[5][1]["Retry-After"] == "0"


def test_api_serves_a_regenerated_file(tmp_path: Path) -> None:
    path = tmp_path / "rates.parquet"
    table = {"date": [date(2026, 1, 2)], "currency": ["EUR"], "rate_to_usd": [1.08]}
    pq.write_table(pa.table(table), path)
    with FxApiServer(path, token=TOKEN) as server:
        assert len(get(f"{server.start()}/v1/rates")[2]["data"]) == 1
        pq.write_table(pa.table({key: values * 2 for key, values in table.items()}), path)
        os.utime(path, (0, 1_000_000_000))
        assert len(get(f"{server.start()}/v1/rates")[2]["data"]) == 2
