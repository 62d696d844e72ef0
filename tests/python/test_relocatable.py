"""A relocatable warehouse: a copied or renamed DuckDB file still reads every view.

DuckDB names a file's catalog after the file and stores a view's SQL as written, so a view that
named `"warehouse"."marts_audit"...` failed in a copy (`Catalog "warehouse" does not exist!`).
"""

import shutil
from pathlib import Path

import duckdb
from conftest import Warehouse

SCHEMAS = ("staging", "marts", "marts_audit", "intermediate", "monitoring")


def test_a_copied_warehouse_reads_every_view(built_warehouse: Warehouse, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "run_b.duckdb"
    copy.parent.mkdir()
    shutil.copyfile(built_warehouse.duckdb_path, copy)
    with duckdb.connect(str(copy), read_only=True) as connection:
        [(catalog,)] = connection.sql("select current_database()").fetchall()
        assert catalog == "run_b"
        views = connection.execute(
            "select schema_name, view_name from duckdb_views() where not internal and schema_name in "
            f"({', '.join('?' for _ in SCHEMAS)}) order by all",
            list(SCHEMAS),
        ).fetchall()
        schemas = {schema for schema, _ in views}
        assert {"staging", "marts"} <= schemas, views
        assert ("marts", "fct_transaction_features") in views and ("marts", "realtime_transaction_features") in views
        rows = {}
        for schema, view in views:
            [(count,)] = connection.sql(f'select count(*) from "{schema}"."{view}"').fetchall()
            rows[f"{schema}.{view}"] = count
        # nothing in any view's text names the original file's catalog
        assert not connection.sql(
            "select view_name from duckdb_views() where not internal and sql ilike '%\"warehouse\".%'"
        ).fetchall()
    assert rows["marts.fct_transaction_features"] > 0 and rows["marts.training_set"] > 0
    assert rows["marts.realtime_transaction_features"] >= rows["marts.fct_transaction_features"]
