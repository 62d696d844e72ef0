"""App database source against the demo's real SQLite file: incremental merge, new column, bad records."""

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from extract_support import Workspace, workspace

from demo.generate import generate
from extract.load import SourceLoad, load_source

SEED = 11
SCALE = 2_000
BEFORE_LOYALTY = date(2026, 5, 1)  # the demo launches loyalty tiers on 2026-05-26
AFTER_LOYALTY = date(2026, 7, 15)
TRANSACTION_COLUMNS = "transaction_id, user_id, amount, currency, status, device_type, created_at, updated_at"
NUMERIC = r"-?[0-9]+(\.[0-9]+)?"


def source_rows(path: Path, sql: str) -> list[tuple]:
    """Rows of a query against the app's SQLite file."""
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def raw_transactions(space: Workspace) -> set[tuple]:
    return set(space.query(f"select {TRANSACTION_COLUMNS} from raw_app.transactions"))


def raw_transaction_rows(space: Workspace) -> Counter[tuple]:
    """The raw rows with their multiplicity (the source's exact duplicates included)."""
    return Counter(space.query(f"select {TRANSACTION_COLUMNS} from raw_app.transactions"))


@dataclass
class TwoSnapshots:
    """The app database loaded as of a day before loyalty tiers existed, then as of a later day."""

    space: Workspace
    app: Path
    first_source: Counter[tuple]
    first_raw: Counter[tuple]
    first_user_columns: list[str]
    first_cursor: str
    second_load: SourceLoad

    def source(self, sql: str) -> list[tuple]:
        return source_rows(self.app, sql)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoSnapshots]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        space = workspace(tmp_path_factory.mktemp("app"), monkeypatch)
        app = space.demo_dir / "app.sqlite"
        generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=BEFORE_LOYALTY)
        first_source = Counter(source_rows(app, f"select {TRANSACTION_COLUMNS} from transactions"))
        load_source("app")
        first_raw = raw_transaction_rows(space)
        first_user_columns = space.columns("raw_app.users")
        [(first_cursor,)] = space.query("select max(updated_at) from raw_app.transactions")
        generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=AFTER_LOYALTY)
        second_load = load_source("app")
        yield TwoSnapshots(space, app, first_source, first_raw, first_user_columns, first_cursor, second_load)


def test_first_load_holds_every_source_row(snapshots: TwoSnapshots) -> None:
    """Every row, as often as the source holds it: staging counts the exact duplicates."""
    assert snapshots.first_raw == snapshots.first_source
    assert any(count > 1 for count in snapshots.first_source.values()), "the demo holds exact duplicates"


def test_updated_rows_replace_old_versions_without_duplicates(snapshots: TwoSnapshots) -> None:
    current = Counter(snapshots.source(f"select {TRANSACTION_COLUMNS} from transactions"))
    assert raw_transaction_rows(snapshots.space) == current
    # transactions whose status changed between the snapshots are stored in their new version only
    before = {row[0]: row for row in snapshots.first_raw}
    changed = {row[0] for row in current if row[0] in before and row != before[row[0]]}
    [(versions,)] = snapshots.space.query(
        "select count(*) from (select transaction_id from raw_app.transactions"
        " group by transaction_id having count(distinct status) > 1)"
    )
    assert versions == 0, "an old version of an updated transaction is still in raw"
    assert changed, "the demo should update some transactions after insert"
    stored = {row[0]: row for row in raw_transactions(snapshots.space)}
    assert all(stored[key] != before[key] for key in changed)


def test_second_run_reads_only_rows_updated_since_the_cursor(snapshots: TwoSnapshots) -> None:
    cursor = snapshots.first_cursor
    [(newer,)] = snapshots.source(f"select count(*) from transactions where updated_at > '{cursor}'")
    [(total,)] = snapshots.source("select count(*) from transactions")
    read = snapshots.second_load.rows["transactions"]
    assert newer <= read < total, (newer, read, total)


def test_loyalty_tier_column_arrives_in_the_raw_table(snapshots: TwoSnapshots) -> None:
    assert "loyalty_tier" not in snapshots.first_user_columns
    assert "loyalty_tier" in snapshots.space.columns("raw_app.users")
    columns = "user_id, name, email, age, country, signup_at, updated_at, loyalty_tier"
    assert set(snapshots.space.query(f"select {columns} from raw_app.users")) == set(
        snapshots.source(f"select {columns} from users")
    )
    [(with_tier, users)] = snapshots.space.query("select count(loyalty_tier), count(*) from raw_app.users")
    assert 0 < with_tier < users


def test_bad_amounts_are_kept_as_the_app_stored_them(snapshots: TwoSnapshots) -> None:
    """Non-numeric amounts ('N/A', 'abc', '12,50', '') stay in the raw table as text, never nulled."""
    types = dict((row[0], row[1]) for row in snapshots.space.query("describe raw_app.transactions"))
    assert types["amount"] == "VARCHAR"
    in_source = snapshots.source("select transaction_id, amount from transactions where amount is not null")
    bad = {(key, amount) for key, amount in in_source if not re.fullmatch(NUMERIC, amount)}
    assert {amount for _, amount in bad} & {"N/A", "n/a", "abc", "--", ""}, bad
    stored = snapshots.space.query(
        f"select transaction_id, amount from raw_app.transactions where not regexp_full_match(amount, '{NUMERIC}')"
    )
    assert set(stored) == bad
