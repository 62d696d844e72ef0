"""The whole pipeline on a small demo: every source loads, dbt builds every layer and its tests pass."""

from conftest import Warehouse


def test_every_source_loads_rows(built_warehouse: Warehouse) -> None:
    loaded = {load.source: sum(load.rows.values()) for load in built_warehouse.loads}
    assert set(loaded) == {"app", "events", "fx", "chargebacks"}
    assert all(rows > 0 for rows in loaded.values()), loaded


def test_dbt_build_succeeds_with_models_and_tests(built_warehouse: Warehouse) -> None:
    build = built_warehouse.build
    assert build.success, build.failures
    assert build.count("model", "success") >= 15
    assert build.count("test", "pass") >= 40
    assert build.count("test", "fail", "error") == 0


def test_every_layer_has_rows(built_warehouse: Warehouse) -> None:
    for relation in (
        "raw_app.transactions",
        "staging.stg_app__transactions",
        "intermediate.int_transactions_cleaned",
        "marts.fct_transaction_features",
        "marts.training_set",
        "marts.user_daily_features",
    ):
        [(rows,)] = built_warehouse.query(f"select count(*) from {relation}")
        assert rows > 0, relation


def test_no_transaction_is_lost_between_raw_and_marts(built_warehouse: Warehouse) -> None:
    """Every distinct raw transaction is either valid (in the features) or quarantined with a reason."""
    [(distinct_raw, valid, quarantined, features)] = built_warehouse.query(
        """
        select
            (select count(distinct transaction_id) from staging.stg_app__transactions),
            (select count(*) from intermediate.int_transactions_cleaned),
            (select count(*) from intermediate.int_quarantined_rows where source_table = 'app.transactions'),
            (select count(*) from marts.fct_transaction_features)
        """
    )
    assert distinct_raw == valid + quarantined
    assert features == valid
    assert quarantined > 0
