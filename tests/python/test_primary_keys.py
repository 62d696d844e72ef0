"""The primary-key tests catch a duplicated row: one row copied in each model's input (a raw table under
a staging view, or the table itself) fails exactly the key tests of the models it reaches."""

import duckdb
from conftest import MOVED_TRANSACTION, RUN_DATE, Warehouse, new_app_load

from pipeline.warehouse.dbt_runner import run_dbt

# one row copied as it is: the raw row under a staging view, the built table's row otherwise
DUPLICATED_ROWS = [
    "insert into raw_app.transactions select * from raw_app.transactions where transaction_id is not null limit 1",
    "insert into raw_events.events select * from raw_events.events limit 1",
    "insert into raw_chargebacks.chargebacks select * from raw_chargebacks.chargebacks limit 1",
    "insert into intermediate.int_chargebacks_validated select * from intermediate.int_chargebacks_validated "
    "where is_first_report and rejection_rule is null limit 1",
    "insert into intermediate.int_fx_rates_validated select * from intermediate.int_fx_rates_validated "
    "where rejection_rule is null limit 1",
]
# every row twice: audited tables rebuilt whole (the publish may leave a view there)
DOUBLED = ["marts_audit.preprocessing_parameters", "marts_audit.online_user_tiers", "marts_audit.online_fx_rates"]
MODELS = [
    "stg_app__transactions",
    "stg_events__events",
    "stg_chargebacks__chargebacks",
    "int_chargebacks_validated",
    "int_fx_rates_validated",
    "preprocessing_parameters",
    "realtime_transaction_features",
    "online_user_tiers",
    "online_fx_rates",
]
KEY_TESTS = {
    "unique_stg_app__transactions_source_row_id",
    "unique_stg_events__events_source_row_id",
    "unique_stg_chargebacks__chargebacks_source_row_id",
    "unique_int_chargebacks_validated_source_row_id",
    "unique_int_chargebacks_validated_transaction_id",
    "unique_int_fx_rates_validated_source_row_id",
    "unique_preprocessing_parameters_fitted_by_invocation_id",
    "row_count_equals_preprocessing_parameters_1",
    "assert_realtime_serves_each_transaction_once",
    "unique_combination_online_user_tiers_user_id__valid_from",
    "unique_combination_online_fx_rates_currency__valid_from_date",
}


def failed_tests(warehouse: Warehouse) -> set[str]:
    summary = run_dbt(["test", "--select", *MODELS], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert summary.count("test", "pass", "fail", "error") > len(KEY_TESTS), summary.output_tail
    return {str(node["unique_id"]).split(".")[2] for node in summary.failed_nodes()}


def test_a_duplicated_row_fails_the_key_tests(warehouse_copy: Warehouse) -> None:
    assert warehouse_copy.build.success, warehouse_copy.build.failures  # every key test passed on the demo build
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        for statement in DUPLICATED_ROWS:
            assert connection.execute(statement).fetchall() == [(1,)], statement
        for table in DOUBLED:
            connection.execute(f"create or replace temp table doubled as select * from {table}")
            connection.execute(f"drop view if exists {table}")
            connection.execute(f"create or replace table {table} as select * from doubled union all from doubled")
        load_id = new_app_load(connection)
        assert connection.execute(MOVED_TRANSACTION, {"load_id": load_id}).fetchall() == [(1,)]
    assert failed_tests(warehouse_copy) == KEY_TESTS
