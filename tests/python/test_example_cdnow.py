"""The bring-your-own-data walk-through, end to end: `make example` on the public CDNOW data set.

69,659 real purchases by 23,570 customers (1997-1998) that nobody here wrote, shipped in the PyPI
package `lifetimes`, converted to the raw contract by examples/cdnow/to_contract.py and run through
the documented settings only: text ids with leading zeros, one currency (USD) and no FX source, no
events, no chargebacks, dates before 2000. Every purchase must reach the features, and a few rows'
features are checked against values worked out by hand from the data file.
"""

import os
import subprocess
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PURCHASES = 69_659
CUSTOMERS = 23_570

# Worked out by hand from lifetimes/datasets/CDNOW_master.txt (transaction id = customer-line number).
# Customer 00002 bought twice on 1997-01-12 (lines 2 and 3): a tie at the same timestamp is not
# "before", so neither sees the other. Customer 00003 bought on 1997-01-02 (line 4, 20.76),
# 1997-03-30 (line 5, 20.76), 1997-04-02 (line 6, 19.54), 1997-11-15 (line 7, 57.45) and 1997-11-25
# (line 8, 20.96); signup_at is the first purchase.
EXPECTED = {
    "00002-00003": {
        "amount_usd": 77.00,
        "user_txn_count_1d": 0,
        "user_txn_count_30d": 0,
        "seconds_since_prev_txn": None,
        "user_tenure_days": 0,
    },
    "00003-00006": {
        "amount_usd": 19.54,
        "user_txn_count_1d": 0,
        "user_txn_count_7d": 1,  # 1997-03-30 is 3 days before
        "user_txn_count_30d": 1,
        "user_amount_sum_7d": 20.76,
        "user_amount_mean_30d": 20.76,
        "seconds_since_prev_txn": 3 * 86_400,
        "user_tenure_days": 90,  # 1997-01-02 -> 1997-04-02
        "day_of_week": 2,  # a Wednesday
    },
    "00003-00008": {
        "amount_usd": 20.96,
        "user_txn_count_7d": 0,  # 1997-11-15 is 10 days before
        "user_txn_count_30d": 1,
        "user_amount_sum_30d": 57.45,
        "seconds_since_prev_txn": 10 * 86_400,
        "user_tenure_days": 327,  # 1997-01-02 -> 1997-11-25
    },
}


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`make example` into a temporary folder, with nothing set but what the target sets."""
    folder = tmp_path_factory.mktemp("cdnow")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SOURCES__", "ML_FEATURES_", "DBT_"))}
    result = subprocess.run(
        ["make", "--no-print-directory", "example", f"EXAMPLE_DIR={folder}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return folder, result


def test_make_example_runs_the_real_data_through_documented_settings(
    example_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, result = example_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{CUSTOMERS:,} users and {PURCHASES:,} transactions" in result.stdout
    assert "SUCCESS" in result.stdout
    # no chargebacks at all: training says so instead of blaming maturity
    assert "no labels" in result.stdout.lower()
    with duckdb.connect(str(folder / "published" / "gold.duckdb"), read_only=True) as gold:
        assert gold.sql(
            "select count(*), count(distinct transaction_id) from marts.fct_transaction_features"
        ).fetchall() == [(PURCHASES, PURCHASES)]
        assert gold.sql("select min(created_at) from marts.fct_transaction_features").fetchone()[0] == datetime(
            1997, 1, 1
        )
        assert gold.sql("select count(*) from marts.fct_transaction_features where is_fraud").fetchone()[0] == 0


def test_hand_checked_features(example_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    folder, result = example_run
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(folder / "published" / "gold.duckdb"), read_only=True) as gold:
        for transaction_id, expected in EXPECTED.items():
            columns = ", ".join(expected)
            row = gold.execute(
                f"select {columns} from marts.fct_transaction_features where transaction_id = ?", [transaction_id]
            ).fetchone()
            assert row is not None, transaction_id
            for (column, value), actual in zip(expected.items(), row, strict=True):
                if value is None:
                    assert actual is None, (transaction_id, column, actual)
                else:
                    assert float(actual) == pytest.approx(value, abs=1e-9), (transaction_id, column, actual)
