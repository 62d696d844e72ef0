"""The benchmark's two reference implementations agree with the dbt build (at the test scale).

- The pandas features (bench/pandas_features.py), computed independently from the raw tables,
  equal marts.fct_transaction_features row for row: two implementations of DESIGN.md's feature
  definitions that agree, and the check the benchmark relies on catches a difference.
- The direct-SQL replay (bench/direct_sql.py) of the build rebuilds the same gold tables from
  the raw tables alone, without dbt.
"""

import datetime as dt
from pathlib import Path

import duckdb
from conftest import RUN_DATE, Warehouse, table_hash

from bench import pandas_features
from bench.direct_sql import replay
from extract.load import SOURCES


def test_pandas_features_equal_the_dbt_features(built_warehouse: Warehouse) -> None:
    raw = pandas_features.read_raw(built_warehouse.duckdb_path)
    computed = pandas_features.features(raw, dt.date.fromisoformat(RUN_DATE))
    with duckdb.connect(str(built_warehouse.duckdb_path), read_only=True) as connection:
        columns = ", ".join(pandas_features.FEATURE_COLUMNS)
        expected = connection.sql(f"select {columns} from marts.fct_transaction_features").df()

    assert len(computed) == len(expected) > 1000
    assert computed["is_fraud"].sum() > 0 and computed["session_events_before_txn"].sum() > 0
    assert pandas_features.compare(expected, computed) == []

    # the check fails on one changed feature value and on one missing transaction
    changed = computed.copy()
    changed.loc[changed.index[10], "user_txn_count_7d"] += 1
    [problem] = pandas_features.compare(expected, changed)
    assert problem.startswith("user_txn_count_7d: 1 row(s) differ")
    assert pandas_features.compare(expected, computed.iloc[1:]) == ["1 transaction(s) only in the first"]


def test_direct_sql_replay_rebuilds_the_same_gold_tables(built_warehouse: Warehouse, tmp_path: Path) -> None:
    # a warehouse with only what the batch sources' dlt loads wrote, as the bench copies it before the
    # build (not raw_stream, which the build's on-run-start hook creates), named like the built one
    # (the compiled SQL names the catalog)
    raw_only = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(raw_only)) as connection:
        connection.execute(f"attach '{built_warehouse.duckdb_path}' as built (read_only)")
        for schema in [f"raw_{source}" for source in SOURCES]:
            connection.execute(f"create schema {schema}")
            tables = connection.sql(
                f"select table_name from duckdb_tables() where database_name = 'built' and schema_name = '{schema}'"
            ).fetchall()
            for (table,) in tables:
                connection.execute(f"create table {schema}.{table} as select * from built.{schema}.{table}")

    replayed = replay(raw_only, built_warehouse.data_dir / "target")

    assert replayed["seconds"] > 0 and "model.ml_features.fct_transaction_features" in replayed["nodes"]
    for relation in ["marts.training_set", "marts.user_daily_features", "intermediate.int_quarantined_rows"]:
        assert table_hash(raw_only, relation) == table_hash(built_warehouse.duckdb_path, relation), relation
