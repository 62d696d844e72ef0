"""Two loads of the same input give identical raw tables; loading it again changes nothing.

The session's warehouse (conftest) was loaded from the demo at the test seed and scale; here the
same demo is generated again into a fresh workspace and loaded by fresh pipelines. Each raw table
is fingerprinted by its content without dlt's load id and row id.
"""

from pathlib import Path

import pytest
from conftest import TEST_SCALE, TEST_SEED, Warehouse
from extract_support import RAW_TABLES, Workspace, table_fingerprint, workspace

from demo.generate import generate
from extract.load import SOURCES, load_source


def fingerprints(space: Workspace) -> dict[str, tuple[int, str]]:
    return {
        f"raw_{source}.{table}": table_fingerprint(space, f"raw_{source}.{table}")
        for source, tables in RAW_TABLES.items()
        for table in tables
    }


def test_same_input_gives_identical_raw_tables(
    built_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = fingerprints(Workspace(built_warehouse.data_dir))
    assert all(count > 0 for count, _ in reference.values()), reference

    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=TEST_SEED, scale=TEST_SCALE)
    for name in SOURCES:
        load_source(name)
    assert fingerprints(space) == reference

    reruns = [load_source(name) for name in SOURCES]
    assert all(load.rows == {} for load in reruns), [load.describe() for load in reruns]
    assert fingerprints(space) == reference
