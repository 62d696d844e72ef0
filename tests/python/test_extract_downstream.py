"""What extract keeps is visible downstream: a new column flows through dbt, bad amounts are quarantined.

- Schema evolution: the demo is loaded as of a day before `users.loyalty_tier` existed and dbt
  builds the users and their SCD2 snapshot; then it is loaded as of a later day, the raw table
  gains the column, and dbt builds everything downstream of the users, tests included: the
  snapshot gains the column and the features carry the tiers.
- A type change: non-numeric amounts ('N/A', 'abc', ...) stay text in raw, reach staging as
  `raw_amount` (the parsed `amount` is null) and are quarantined with a reason naming the value.
"""

from datetime import date
from pathlib import Path

import pytest
from conftest import RUN_DATE, Warehouse
from extract_support import workspace

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import run_dbt

SEED = 19
SCALE = 1_000
NUMERIC = r"-?[0-9]+(\.[0-9]+)?"


def dbt_build(selection: str, with_tests: bool) -> None:
    """`dbt build` of the selection; dbt's unit tests (fixed inputs, not the raw tables) are left to their own tests."""
    excluded = ["resource_type:unit_test"] + ([] if with_tests else ["resource_type:test"])
    summary = run_dbt(
        ["build", "--select", selection, "--exclude", *excluded], dbt_vars={"run_date": RUN_DATE}, quiet=True
    )
    assert summary.success, summary.failures
    assert summary.count("snapshot", "success") == 1
    assert summary.count("test", "fail", "error") == 0


def test_new_column_flows_through_dbt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=date(2026, 5, 1))
    for name in SOURCES:
        load_source(name)
    assert "loyalty_tier" not in space.columns("raw_app.users")
    dbt_build("+users_snapshot", with_tests=False)  # the users and their snapshot before the column existed
    assert space.query("select count(loyalty_tier) from snapshots.users_snapshot") == [(0,)]

    generate(space.demo_dir, seed=SEED, scale=SCALE)
    load_source("app")
    assert "loyalty_tier" in space.columns("raw_app.users")
    # everything downstream of the users with its tests, and the rest of the gold: a build publishes
    # only when it built every gold model (the online store's tables do not depend on the users)
    dbt_build("@stg_app__users +config.meta.publish:true", with_tests=True)
    [(tiers,)] = space.query("select count(distinct loyalty_tier) from snapshots.users_snapshot")
    assert tiers == 4
    [(with_tier,)] = space.query("select count(loyalty_tier) from marts.fct_transaction_features")
    assert with_tier > 0


def test_non_numeric_amounts_reach_quarantine_with_their_text(built_warehouse: Warehouse) -> None:
    raw = set(
        built_warehouse.query(
            # keys are text from staging on: the raw integer id as its decimal text
            f"select cast(transaction_id as varchar), amount from raw_app.transactions "
            f"where not regexp_full_match(amount, '{NUMERIC}')"
        )
    )
    assert {amount for _, amount in raw} & {"N/A", "n/a", "abc", "--", ""}
    staged = set(
        built_warehouse.query(
            "select transaction_id, raw_amount from staging.stg_app__transactions where amount is null"
        )
    )
    assert raw <= staged
    quarantined = dict(
        built_warehouse.query(
            "select record_key, rejection_reason from intermediate.int_quarantined_rows "
            "where source_table = 'app.transactions' and rejection_rule = 'non_numeric_amount'"
        )
    )
    for key, amount in raw:
        assert f"'{amount}'" in quarantined[str(key)]
