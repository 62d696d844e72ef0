"""What a run summary says about the data, on success too: the quarantine per source table (count,
top rules, a sample reason), the tests that warned (named, with their failing rows),
and for a failed build the database's own message, not dbt's header cut before it."""

import contextlib
import io
import sqlite3
from pathlib import Path

import duckdb
import pytest
from conftest import RUN_DATE, TEST_SEED, Warehouse, demo_environment

from demo.generate import generate
from orchestration.summary import dbt_results
from pipeline.cli import main
from pipeline.training.train import NO_LABELS


def pipeline(*args: str) -> tuple[int, str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = main(list(args))
    return code, output.getvalue()


def quarantined(warehouse: Warehouse) -> dict[str, tuple[int, str, int]]:
    """Per source table: rows quarantined, its top rule and that rule's count, as the warehouse holds them."""
    rows = warehouse.query(
        """
        with rules as (
            select source_table, rejection_rule, count(*) as rows from intermediate.int_quarantined_rows group by all
        )
        select source_table, sum(rows) over (partition by source_table), rejection_rule, rows
        from rules
        qualify row_number() over (partition by source_table order by rows desc, rejection_rule) = 1
        """
    )
    return {table: (int(total), rule, int(count)) for table, total, rule, count in rows}


def null_ages(app_database: Path, share: float) -> int:
    """Set `share` of the users' ages to null (a new version of each, after the cursor); how many."""
    with sqlite3.connect(app_database) as connection:
        [(users,)] = connection.execute("select count(*) from users").fetchall()
        changed = int(users * share)
        connection.execute(
            "update users set age = null, updated_at = '2026-10-01T00:00:00+00:00' "
            "where user_id in (select user_id from users order by user_id limit ?)",
            [changed],
        )
    return changed


def test_a_successful_run_lists_the_quarantine_and_the_tests_that_warned(
    warehouse_copy: Warehouse,
) -> None:
    # a fifth of the ages missing: the null-rate test warns (over 10%) but does not fail (over 50%)
    null_ages(warehouse_copy.data_dir / "demo" / "app.sqlite", 0.2)
    code, output = pipeline("run", "--date", RUN_DATE, "--sources", "app", "--skip-export", "--skip-train")
    assert code == 0, output
    summary = output[output.index("\n==== daily ") :]
    assert "SUCCESS" in summary
    expected = quarantined(warehouse_copy)
    assert "app.transactions" in expected  # the demo has bad transactions
    assert "quarantined (intermediate.int_quarantined_rows), by source table:" in summary
    for table, (total, rule, count) in expected.items():
        [line] = [line for line in summary.splitlines() if line.strip().startswith(table + " ")]
        assert f" {total:,} of " in line and f"{rule} {count:,}" in line and "(e.g. '" in line, line
    warned = "null_rate_below_int_users_cleaned_age__0_1"
    run_id = summary.split(" run ")[1].split(":")[0]
    [failures] = [node["failures"] for node in dbt_results(run_id).node_results if warned in str(node["unique_id"])]
    assert f"    warn   {warned}: {failures:,} failing row" in summary
    # with the row the test kept, which says what it measured
    kept = summary.split(f"    warn   {warned}: ")[1].splitlines()[1]
    assert kept.strip().startswith("null_rows=") and "null_rate=" in kept, kept


@pytest.fixture
def missing_chargebacks(warehouse_copy: Warehouse) -> Warehouse:
    """A warehouse whose raw chargebacks table is gone, as when the bucket was an empty folder."""
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute("drop table raw_chargebacks.chargebacks")
    return warehouse_copy


def test_a_failed_build_names_the_database_message_and_only_tables_that_exist(
    missing_chargebacks: Warehouse,
) -> None:
    code, output = pipeline("run", "--date", RUN_DATE, "--skip-extract", "--skip-export", "--skip-train")
    assert code == 1
    message = output[output.index("validation failed:") :]
    errors = [line for line in message.splitlines() if line.startswith("  error  test source_")]
    assert errors, message
    for line in errors:
        # the database's own message, not dbt's header line (node and file) cut before it
        assert "Catalog Error: Table with name chargebacks does not exist!" in line, line
        assert "Runtime Error in test" not in line and "…" not in line.split("|")[0]
        assert "rows kept" not in line  # an erroring test stores no rows: no table to name
    with duckdb.connect(str(missing_chargebacks.duckdb_path), read_only=True) as connection:
        for line in message.splitlines():
            if "rows kept: select * from " in line:
                schema, table = line.split("rows kept: select * from ")[1].rstrip(")").split(".")
                [(found,)] = connection.execute(
                    "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                    [schema, table],
                ).fetchall()
                assert found == 1, line


def test_no_chargebacks_at_all_skips_training_for_that_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    generate(tmp_path / "demo", seed=TEST_SEED, scale=1500)
    monkeypatch.setenv("SOURCES__BUCKET_FILES__ENABLED", "false")
    code, output = pipeline("run", "--date", RUN_DATE)
    assert code == 0, output
    [train] = [line for line in output.splitlines() if line.startswith("[train] skipped: ")]
    assert train.startswith(f"[train] skipped: {NO_LABELS} (")
    assert "no chargebacks matched a transaction; is the chargebacks source turned off?" in train
    assert "matured" not in train
