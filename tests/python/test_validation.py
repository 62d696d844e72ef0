"""Validation and cleaning in dbt, without losing a row.

Each defect kind is injected into the raw tables of a copy of the built demo warehouse, as a load
of its own. Defects a row can be rejected for land in the quarantine with their rule, a readable
reason, the load id and the raw values, and the build still passes (warnings only). Defects that
would make features wrong fail the dbt test that guards them, and the stored failures (schema
`test_failures`) hold the offending rows. The clean demo passes every error-severity test, and the
reconciliation accounts for every raw row: raw = valid + quarantined + duplicates removed.
"""

import datetime as dt
import json
import subprocess
import time

import duckdb
from conftest import RUN_DATE, Warehouse

from pipeline.warehouse.dbt_runner import PROJECT_DIR as DBT_PROJECT_DIR
from pipeline.warehouse.dbt_runner import DbtSummary, dbt_command, dbt_environment, run_dbt, target_path

TABLES = {"app.users", "app.transactions", "events.events", "fx.rates", "chargebacks.chargebacks"}
DEMO_RULES = {  # the bad records demo/generate.py writes
    ("app.transactions", "negative_amount"),
    ("app.transactions", "non_numeric_amount"),
    ("app.transactions", "unknown_currency"),
    ("app.transactions", "unknown_user"),
    ("app.transactions", "unparseable_timestamp"),
    ("chargebacks.chargebacks", "unknown_transaction"),
}
UNKNOWN_ID = 99999999


# ------------------------------------------------------------------------------------------------
# helpers


def add_load(connection: duckdb.DuckDBPyConnection, dataset: str, seconds_later: int, status: int = 0) -> str:
    """Register a dlt load `seconds_later` than the dataset's latest (status 0 = completed); its id."""
    [(latest,)] = connection.sql(f"select max(load_id) from {dataset}._dlt_loads").fetchall()
    load_id = f"{float(latest) + seconds_later:.7f}"
    connection.execute(
        f"insert into {dataset}._dlt_loads (load_id, schema_name, status, inserted_at, schema_version_hash) "
        f"select ?, schema_name, ?, now(), schema_version_hash from {dataset}._dlt_loads limit 1",
        [load_id, status],
    )
    return load_id


def insert_rows(connection: duckdb.DuckDBPyConnection, table: str, load_id: str, rows: list[dict]) -> None:
    """Insert raw rows by column name (missing columns are null), each with a `_dlt_id` and the load id."""
    for number, row in enumerate(rows):
        values = {**row, "_dlt_id": f"injected-{load_id}-{number}", "_dlt_load_id": load_id}
        columns = ", ".join(values)
        placeholders = ", ".join("?" for _ in values)
        connection.execute(f"insert into {table} ({columns}) values ({placeholders})", list(values.values()))


def transaction(transaction_id: int | None, **changes: object) -> dict:
    """A valid raw transaction of user 1, with `changes` applied."""
    row = {
        "transaction_id": transaction_id,
        "user_id": 1,
        "amount": "10.00",
        "currency": "USD",
        "status": "completed",
        "device_type": "mobile",
        "created_at": "2026-05-01 10:00:00",
        "updated_at": "2026-05-01 10:00:00",
    }
    return {**row, **changes}


def node_name(unique_id: object) -> str:
    """`test.<project>.<name>[.<hash>]` or `unit_test.<project>.<model>.<name>`: the name."""
    parts = str(unique_id).split(".")
    return parts[3] if parts[0] == "unit_test" else parts[2]


def results_by_name(build: DbtSummary) -> dict[str, dict]:
    """Every node's result by its name."""
    return {node_name(node["unique_id"]): node for node in build.node_results}


def failed_by_name(build: DbtSummary) -> dict[str, dict]:
    return {node_name(node["unique_id"]): node for node in build.failed_nodes()}


def stored_failures(warehouse: Warehouse, node: dict) -> list[dict]:
    """The offending rows dbt stored for a failed or warning test, as dicts."""
    relation = node["relation_name"]
    assert relation and "test_failures" in str(relation), node
    with duckdb.connect(str(warehouse.duckdb_path), read_only=True) as connection:
        result = connection.sql(f"select * from {relation}")
        return [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]


def reconciliation(warehouse: Warehouse) -> dict[tuple[str, str], dict]:
    with duckdb.connect(str(warehouse.duckdb_path), read_only=True) as connection:
        result = connection.sql("select * from monitoring.row_reconciliation")
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.fetchall()]
    return {(row["source_table"], row["source_load_id"]): row for row in rows}


def assert_every_row_accounted_for(rows: dict[tuple[str, str], dict]) -> None:
    for key, row in rows.items():
        assert row["raw_rows"] == row["valid_rows"] + row["quarantined_rows"] + row["duplicates_removed"], key
        assert row["staged_rows"] == row["valid_rows"] + row["quarantined_rows"], key
        assert row["unaccounted_rows"] == 0, key


# ------------------------------------------------------------------------------------------------
# the clean demo


def test_clean_demo_passes_every_error_test_and_accounts_for_every_raw_row(built_warehouse: Warehouse) -> None:
    build = built_warehouse.build
    assert build.success and not build.failed_nodes(), build.failures
    results = results_by_name(build)
    for name in (
        "row_reconciliation_raw_rows_are_all_accounted_for",
        "row_reconciliation_staged_rows_are_valid_or_quarantined",
        "assert_duplicates_removed_match_staging",
        "transactions_break_rules_in_priority_order_and_convert_to_usd",
        "users_are_trimmed_lowered_grouped_and_bad_ages_flagged",
        "transactions_parse_safely_from_completed_loads_only",
        "transactions_keep_the_latest_version_and_never_collapse_missing_ids",
        "events_keep_the_first_delivery_and_never_collapse_missing_ids",
        "preprocessing_is_fitted_on_the_train_split_only",
    ):
        assert results[name]["status"] == "pass", results[name]

    rows = reconciliation(built_warehouse)
    assert {table for table, _ in rows} == TABLES
    assert_every_row_accounted_for(rows)
    raw_total = sum(row["raw_rows"] for row in rows.values())
    [(raw_in_warehouse,)] = built_warehouse.query(
        "select (select count(*) from raw_app.users) + (select count(*) from raw_app.transactions)"
        " + (select count(*) from raw_events.events) + (select count(*) from raw_fx.rates)"
        " + (select count(*) from raw_chargebacks.chargebacks)"
    )
    assert raw_total == raw_in_warehouse

    quarantined = built_warehouse.query(
        "select source_table, rejection_rule, count(*), count(rejection_reason), count(source_load_id),"
        " count(raw_values) from intermediate.int_quarantined_rows group by all"
    )
    assert {(table, rule) for table, rule, *_ in quarantined} == DEMO_RULES
    assert all(rows_ == reasons == loads == raw for _, _, rows_, reasons, loads, raw in quarantined)
    summary = built_warehouse.query(
        "select source_table, rejection_rule, sum(quarantined_rows) from monitoring.quarantine_summary group by all"
    )
    assert sorted(summary) == sorted((table, rule, count) for table, rule, count, *_ in quarantined)


# ------------------------------------------------------------------------------------------------
# defects a row is rejected for: quarantined with its rule and reason, the build passes


def test_every_rejected_row_is_quarantined_with_its_rule_and_reason(warehouse_copy: Warehouse) -> None:
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        app_load = add_load(connection, "raw_app", 60)
        insert_rows(
            connection,
            "raw_app.transactions",
            app_load,
            [
                transaction(900001, amount="-25.00"),
                transaction(900002, amount="twelve"),
                transaction(900003, user_id=UNKNOWN_ID),
                transaction(900004, created_at="not a date"),
                transaction(900005, currency="ZZZ"),
                transaction(900006, currency="EUR", created_at="2020-01-01 10:00:00"),
                transaction(None),
                transaction(900007),  # valid
            ],
        )
        # an older version of transaction 1 arriving late: a duplicate spanning loads
        connection.execute(
            "insert into raw_app.transactions select * replace ('2000-01-01 00:00:00' as updated_at,"
            f" 'stale-copy-of-1' as _dlt_id, '{app_load}' as _dlt_load_id)"
            " from raw_app.transactions where transaction_id = 1"
        )
        insert_rows(
            connection,
            "raw_app.users",
            app_load,
            [
                {
                    "user_id": None,
                    "name": " Nobody ",
                    "email": "nobody@example.com",
                    "age": 30,
                    "country": "US",
                    "signup_at": "2026-01-01 00:00:00",
                    "updated_at": "2026-01-01 00:00:00",
                },
            ],
        )
        events_load = add_load(connection, "raw_events", 60)
        # a load dlt did not finish, of a table it appends to (in a table it merges into, such rows stop
        # the build: test_fault_dbt_loads.py)
        unfinished_load = add_load(connection, "raw_events", 120, status=1)
        insert_rows(
            connection,
            "raw_events.events",
            unfinished_load,
            [{"event_id": "evt_unfinished", "user_id": 1, "event_type": "login", "occurred_at": None}],
        )
        [(last_event_day,)] = connection.sql(
            "select max(cast(timezone('UTC', occurred_at) as date)) from raw_events.events"
        ).fetchall()
        insert_rows(
            connection,
            "raw_events.events",
            events_load,
            [
                {
                    "event_id": "evt_injected_1",
                    "user_id": UNKNOWN_ID,
                    "event_type": "login",
                    "occurred_at": "2026-06-01 10:00:00+00",
                },
                {"event_id": "evt_injected_2", "user_id": 1, "event_type": "login", "occurred_at": None},
                # a new day whose events were mostly lost upstream (three arrived): the row-count monitor warns
                *(
                    {
                        "event_id": f"evt_new_day_{number}",
                        "user_id": 1,
                        "event_type": "login",
                        "occurred_at": f"{last_event_day + dt.timedelta(days=1)} 10:00:00+00",
                    }
                    for number in range(3)
                ),
            ],
        )
        fx_load = add_load(connection, "raw_fx", 60)
        insert_rows(
            connection,
            "raw_fx.rates",
            fx_load,
            [
                {"date": "2026-12-01", "currency": "EUR", "rate_to_usd": 0.0},
                {"date": "2026-12-01", "currency": "GBP", "rate_to_usd": -1.27},
                {"date": "2026-12-02", "currency": "EUR", "rate_to_usd": None},
                {"date": "someday", "currency": "EUR", "rate_to_usd": 1.1},
            ],
        )
        chargebacks_load = add_load(connection, "raw_chargebacks", 60)
        insert_rows(
            connection,
            "raw_chargebacks.chargebacks",
            chargebacks_load,
            [
                {
                    "transaction_id": "abc",
                    "reported_at": "2026-06-01 10:00:00",
                    "reason": "fraud",
                    "_source_file": "injected.csv",
                    "_source_row": 0,
                },
                {
                    "transaction_id": " ",
                    "reported_at": "2026-06-01 10:00:00",
                    "reason": "fraud",
                    "_source_file": "injected.csv",
                    "_source_row": 3,
                },
                {
                    "transaction_id": "5",
                    "reported_at": "someday",
                    "reason": "fraud",
                    "_source_file": "injected.csv",
                    "_source_row": 1,
                },
                {
                    "transaction_id": str(UNKNOWN_ID),
                    "reported_at": "2026-06-01 10:00:00",
                    "reason": "fraud",
                    "_source_file": "injected.csv",
                    "_source_row": 2,
                },
            ],
        )

    # cautious: only tests whose every parent is rebuilt (the gold tables are not, on purpose)
    selection = ["-s", "+quarantine_summary", "--indirect-selection", "cautious"]
    build = run_dbt(["build", *selection], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert build.success and not build.failed_nodes(), build.failures

    quarantined = set(
        warehouse_copy.query(
            "select source_table, record_key, rejection_rule, rejection_reason from intermediate.int_quarantined_rows "
            f"where source_load_id in ('{app_load}', '{events_load}', '{fx_load}', '{chargebacks_load}')"
        )
    )
    assert quarantined == {
        ("app.transactions", "900001", "negative_amount", "amount -25.00 is negative"),
        ("app.transactions", "900002", "non_numeric_amount", "amount 'twelve' is not a number"),
        ("app.transactions", "900003", "unknown_user", f"user_id {UNKNOWN_ID} is not a known user"),
        ("app.transactions", "900004", "unparseable_timestamp", "created_at 'not a date' is not a timestamp"),
        ("app.transactions", "900005", "unknown_currency", "currency 'ZZZ' is not a known currency"),
        ("app.transactions", "900006", "missing_fx_rate", "no EUR rate on or before 2020-01-01"),
        ("app.transactions", None, "missing_key", "transaction_id is missing"),
        ("app.users", None, "missing_key", "user_id is missing"),
        ("events.events", "evt_injected_1", "unknown_user", f"user_id {UNKNOWN_ID} is not a known user"),
        ("events.events", "evt_injected_2", "unparseable_timestamp", "occurred_at is missing or not a timestamp"),
        ("fx.rates", "2026-12-01/EUR", "non_positive_rate", "rate_to_usd 0.0 is not positive"),
        ("fx.rates", "2026-12-01/GBP", "non_positive_rate", "rate_to_usd -1.27 is not positive"),
        ("fx.rates", "2026-12-02/EUR", "missing_rate", "rate_to_usd 'null' is missing or not a number"),
        ("fx.rates", "someday/EUR", "missing_key", "date 'someday' or currency 'EUR' is missing or not valid"),
        # ids are text: 'abc' is an id, of no transaction; a blank one is missing
        ("chargebacks.chargebacks", "abc", "unknown_transaction", "transaction_id abc is not a known transaction"),
        ("chargebacks.chargebacks", " ", "missing_key", "transaction_id is missing"),
        ("chargebacks.chargebacks", "5", "unparseable_timestamp", "reported_at 'someday' is not a timestamp"),
        (
            "chargebacks.chargebacks",
            str(UNKNOWN_ID),
            "unknown_transaction",
            f"transaction_id {UNKNOWN_ID} is not a known transaction",
        ),
    }
    [(raw_values,)] = warehouse_copy.query(
        "select raw_values from intermediate.int_quarantined_rows where record_key = '900002'"
    )
    assert raw_values == "user_id=1; amount=twelve; currency=USD; created_at=2026-05-01 10:00:00"
    # the load dlt did not finish is never read: nowhere downstream, not even in the quarantine
    assert warehouse_copy.query(
        "select count(*) from staging.stg_events__events where event_id = 'evt_unfinished'"
        f" or source_load_id = '{unfinished_load}'"
    ) == [(0,)]
    [(fx_rate_kept,)] = warehouse_copy.query(
        "select count(*) from intermediate.int_fx_rates_ranged where valid_from_date >= '2026-12-01'"
    )
    assert fx_rate_kept == 0

    rows = reconciliation(warehouse_copy)
    assert_every_row_accounted_for(rows)
    assert (("events.events", unfinished_load)) not in rows
    injected = rows[("app.transactions", app_load)]
    assert (injected["raw_rows"], injected["valid_rows"], injected["quarantined_rows"]) == (9, 1, 7)
    # the stale copy of transaction 1 is removed in the load it arrived in; staging counts it on
    # the kept version, in the first load: per table the two agree (assert_duplicates_removed_match_staging)
    assert (injected["duplicates_removed"], injected["duplicates_counted_by_staging"]) == (1, 0)
    [first_load] = [row for (table, load), row in rows.items() if table == "app.transactions" and load != app_load]
    # (raw app tables keep every version a key had, so the first load has duplicates of its own)
    assert first_load["duplicates_counted_by_staging"] == first_load["duplicates_removed"] + 1
    assert rows[("fx.rates", fx_load)]["quarantined_rows"] == 4
    assert rows[("chargebacks.chargebacks", chargebacks_load)]["quarantined_rows"] == 4

    # warnings, not failures: each names its rule, and its stored rows name the offending records
    warned = {name: node for name, node in results_by_name(build).items() if node["status"] == "warn"}
    missing_keys = stored_failures(warehouse_copy, warned["source_not_null_app_transactions_transaction_id"])
    assert [row["_dlt_load_id"] for row in missing_keys] == [app_load]
    assert stored_failures(warehouse_copy, warned["source_not_null_app_users_user_id"])[0]["name"] == " Nobody "
    shares = stored_failures(warehouse_copy, warned["row_reconciliation_quarantined_share_at_most_5_percent"])
    assert {(row["source_table"], row["source_load_id"]) for row in shares} >= {("app.transactions", app_load)}
    [drop] = stored_failures(
        warehouse_copy, warned["row_count_not_dropped_int_events_validated_cast_occurred_at_as_date_"]
    )
    assert drop["failure_message"].startswith("row_count_not_dropped: all cast(occurred_at as date) 2026-")
    assert drop["drop_fraction"] > 0.2


def test_amounts_too_large_and_timestamps_after_the_load_are_quarantined_with_the_true_reason(
    warehouse_copy: Warehouse,
) -> None:
    """Every raw row is valid, quarantined with its reason, or a duplicate: an amount too large to store
    is not "not a number", and a transaction created after dlt loaded it (2099, a wrong clock) is
    quarantined, not left valid but on no day a build makes."""
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        app_load = add_load(connection, "raw_app", 60)
        [(loaded_at, loaded_at_text)] = connection.execute(
            "select load_time, cast(load_time as varchar) "
            "from (select make_timestamp(cast(cast(? as double) * 1e6 as bigint)) as load_time)",
            [app_load],
        ).fetchall()
        within_skew = (loaded_at + dt.timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
        insert_rows(
            connection,
            "raw_app.transactions",
            app_load,
            [
                transaction(910001, amount="1e30"),
                transaction(910002, amount="NaN"),
                transaction(910003, created_at="2099-01-01 00:00:00", updated_at="2099-01-01 00:00:00"),
                transaction(910004, created_at=within_skew),  # a clock a little ahead: valid
            ],
        )
    build = run_dbt(
        # the rules' unit test (transactions_break_rules_in_priority_order...) runs in every full build
        [
            "build",
            "-s",
            "+quarantine_summary",
            "--indirect-selection",
            "cautious",
            "--exclude-resource-type",
            "unit_test",
        ],
        dbt_vars={"run_date": RUN_DATE},
        quiet=True,
    )
    assert build.success and not build.failed_nodes(), build.failures
    quarantined = set(
        warehouse_copy.query(
            "select record_key, rejection_rule, rejection_reason from intermediate.int_quarantined_rows "
            f"where source_load_id = '{app_load}'"
        )
    )
    assert quarantined == {
        ("910001", "amount_out_of_range", "amount '1e30' is a number too large to store"),
        ("910002", "non_numeric_amount", "amount 'NaN' is not a number"),
        (
            "910003",
            "created_at_in_future",
            f"created_at 2099-01-01 00:00:00 is after the row was loaded ({loaded_at_text} UTC)",
        ),
    }
    assert warehouse_copy.query(
        "select transaction_id from intermediate.int_transactions_cleaned "
        "where transaction_id in ('910001', '910002', '910003', '910004')"
    ) == [("910004",)]
    rows = reconciliation(warehouse_copy)
    assert_every_row_accounted_for(rows)
    injected = rows[("app.transactions", app_load)]
    assert (injected["raw_rows"], injected["valid_rows"], injected["quarantined_rows"]) == (4, 1, 3)


# ------------------------------------------------------------------------------------------------
# defects that would make features wrong: the matching test fails, naming the rule and the rows


def test_defects_that_make_features_wrong_fail_with_the_offending_rows(warehouse_copy: Warehouse) -> None:
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        insert_rows(
            connection,
            "raw_app.transactions",
            add_load(connection, "raw_app", 60),
            [
                transaction(900101, updated_at=None),  # loaded by the app source: kept, and a warning
                transaction(900102, status="disputed"),  # a status the pipeline does not know
            ],
        )
        # two rates for one day and currency: the conversion is ambiguous
        connection.execute(
            "insert into raw_fx.rates select date, currency, rate_to_usd * 2, _dlt_load_id, _dlt_id || '-twin' "
            "from raw_fx.rates where currency = 'EUR' order by date limit 1"
        )
        # most ages missing: the median imputer fills in most of the feature, by design (a data set
        # may have no ages at all): a warning with the offending numbers, not a failure
        connection.execute("update raw_app.users set age = null where user_id % 10 < 6")

    dbt_vars = {"run_date": RUN_DATE}
    # run, then test: `dbt build` would skip the tests downstream of the first failure
    selection = ["-s", "+row_reconciliation", "--indirect-selection", "cautious"]
    assert run_dbt(["run", *selection], dbt_vars=dbt_vars, quiet=True).success
    tested = run_dbt(["test", *selection], dbt_vars=dbt_vars, quiet=True)
    assert not tested.success
    failed = failed_by_name(tested)
    unknown_status_test = "accepted_values_int_transactions_cleaned_status__pending__completed__failed__refunded"
    assert set(failed) == {
        unknown_status_test,
        "unique_combination_stg_fx__rates_rate_date__currency",
        "unique_combination_int_fx_rates_ranged_currency__valid_from_date",
    }, tested.failures

    null_cursor_test = results_by_name(tested)["not_null_int_transactions_validated_updated_at"]
    assert null_cursor_test["status"] == "warn"
    [null_cursor] = stored_failures(warehouse_copy, null_cursor_test)
    assert null_cursor["transaction_id"] == "900101"
    assert stored_failures(warehouse_copy, failed[unknown_status_test]) == [{"value_field": "disputed", "n_records": 1}]
    [twin_rate] = stored_failures(warehouse_copy, failed["unique_combination_stg_fx__rates_rate_date__currency"])
    assert (twin_rate["currency"], twin_rate["duplicate_rows"]) == ("EUR", 2)
    [ages] = stored_failures(warehouse_copy, results_by_name(tested)["null_rate_below_int_users_cleaned_age__0_5"])
    assert ages["failure_message"].startswith("null_rate_below: age is null in ")
    assert ages["failure_message"].endswith("above the allowed 50.0%") and ages["null_rate"] > 0.5
    assert results_by_name(tested)["null_rate_below_int_users_cleaned_age__0_1"]["status"] == "warn"
    assert results_by_name(tested)["null_rate_below_int_users_cleaned_age__0_5"]["status"] == "warn"

    # a rejected row lost on its way to the quarantine (a bug, simulated): the reconciliation fails
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute(
            "delete from intermediate.int_quarantined_rows where source_row_id = (select min(source_row_id)"
            " from intermediate.int_quarantined_rows where source_table = 'app.transactions')"
        )
    lost = run_dbt(["build", "-s", "row_reconciliation"], dbt_vars=dbt_vars, quiet=True)
    failed = failed_by_name(lost)
    assert set(failed) == {
        "row_reconciliation_raw_rows_are_all_accounted_for",
        "row_reconciliation_staged_rows_are_valid_or_quarantined",
    }, lost.failures
    [unaccounted] = stored_failures(warehouse_copy, failed["row_reconciliation_raw_rows_are_all_accounted_for"])
    assert (unaccounted["source_table"], unaccounted["unaccounted_rows"]) == ("app.transactions", 1)


def test_the_reconciliation_counts_fail_on_a_row_staging_lost_kept_twice_or_made_up(
    warehouse_copy: Warehouse,
) -> None:
    """row_reconciliation counts by aggregate (raw - kept rows per load), not by joining row ids: the
    raw rows must still equal the rows the kept ones stand for, per table, and no load may have more
    kept than raw rows. Each bug below, simulated on the cleaned tables, fails the build."""
    dbt_vars = {"run_date": RUN_DATE}
    reconcile = ["build", "-s", "row_reconciliation", "--exclude-resource-type", "unit_test"]
    assert run_dbt(reconcile, dbt_vars=dbt_vars, quiet=True).success
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        # staging lost a delivered event: its kept row is gone, and the raw row with it
        connection.execute(
            "delete from intermediate.int_events_validated where event_id = (select min(event_id)"
            " from intermediate.int_events_validated where rows_in_raw = 1 and rejection_rule is null)"
        )
        # a valid transaction kept twice
        connection.execute(
            "insert into intermediate.int_transactions_validated select * from intermediate.int_transactions_validated"
            " where transaction_id = (select min(transaction_id) from intermediate.int_transactions_validated"
            " where rejection_rule is null)"
        )
        # a kept transaction no raw load holds (made up: its load is unknown to raw)
        connection.execute(
            "update intermediate.int_transactions_validated set source_load_id = '1.5'"
            " where transaction_id = (select max(transaction_id) from intermediate.int_transactions_validated"
            " where rejection_rule is null)"
        )
    broken = run_dbt(reconcile, dbt_vars=dbt_vars, quiet=True)
    failed = failed_by_name(broken)
    assert set(failed) >= {
        "assert_duplicates_removed_match_staging",
        "row_reconciliation_kept_rows_are_rows_of_their_load",
    }, broken.failures
    mismatched = stored_failures(warehouse_copy, failed["assert_duplicates_removed_match_staging"])
    by_table = {row["source_table"]: row for row in mismatched}
    # one more raw row than the kept rows stand for (lost); one fewer (kept twice)
    events, transactions = by_table["events.events"], by_table["app.transactions"]
    assert events["duplicates_removed"] == events["duplicates_counted_by_staging"] + 1
    assert transactions["duplicates_removed"] == transactions["duplicates_counted_by_staging"] - 1
    [made_up] = stored_failures(warehouse_copy, failed["row_reconciliation_kept_rows_are_rows_of_their_load"])
    assert (made_up["source_table"], made_up["source_load_id"], made_up["raw_rows"]) == (
        "app.transactions",
        "1.5",
        0,
    )


def test_source_freshness_errors_on_a_stale_source(warehouse_copy: Warehouse) -> None:
    def freshness() -> dict[str, str]:
        settings = {"run_date": RUN_DATE}  # the build's settings: a partial parse
        command = dbt_command(["source", "freshness"], None, settings)
        environment = dbt_environment(settings)
        subprocess.run(command, cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False, env=environment)
        results = json.loads((target_path() / "sources.json").read_text())["results"]
        return {result["unique_id"].split(".", 2)[-1]: result["status"] for result in results}

    ten_days_ago = f"{time.time() - 10 * 86400:.7f}"
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute("update raw_fx.rates set _dlt_load_id = ?", [ten_days_ago])
    statuses = freshness()
    assert statuses.pop("fx.rates") == "error"  # error_after 7 days: the rates no longer convert today's amounts
    assert set(statuses.values()) == {"pass"}


def test_the_unit_tests_pass_in_a_shell_holding_a_day_runs_settings(warehouse_copy: Warehouse) -> None:
    """A user who copies a day run's settings into their shell (ML_FEATURES_FROM_DATE...) and runs
    dbt's unit tests gets what a full build gets: a unit test of the full-build path overrides the
    environment too, not only the vars (it failed before)."""
    day = {"run_date": RUN_DATE, "from_date": RUN_DATE, "to_date": RUN_DATE, "tested_from_date": RUN_DATE}
    unit = run_dbt(["test", "--select", "test_type:unit"], dbt_vars=day, quiet=True)
    assert unit.success and not unit.failed_nodes(), unit.failures or unit.output_tail
    assert unit.counts[("unit_test", "pass")] >= 20, unit.counts
