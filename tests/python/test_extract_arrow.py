"""Large tables travel as Arrow tables, not Python dicts: what each file and database source yields."""

from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from demo.generate import generate
from extract.app_database import app_database
from extract.bucket_files import bucket_files
from extract.event_stream import event_stream


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("arrow-demo")
    generate(out, seed=23, scale=600)
    return out


@pytest.fixture(autouse=True)
def fresh_state(tmp_path: Path) -> None:
    """Iterating a source outside a run uses the active pipeline's incremental state: start from none."""
    dlt.pipeline(pipeline_name="arrow_probe", pipelines_dir=str(tmp_path / "pipelines"))


def items(source: object, resource: str) -> list[object]:
    """Every item the resource yields, read directly (no load)."""
    return list(source.resources[resource])  # type: ignore[attr-defined]


def data_and_file_rows(source: object, resource: str) -> tuple[list[object], list[object]]:
    """The file sources' items: their data, and the small `rejected_files` rows (one per file)."""
    everything = items(source, resource)
    file_rows = [item for item in everything if isinstance(item, dict) and "is_readable" in item]
    return [item for item in everything if not (isinstance(item, dict) and "is_readable" in item)], file_rows


@pytest.mark.parametrize("backend", ["connectorx", "pyarrow"])
def test_app_tables_arrive_as_arrow(demo: Path, backend: str) -> None:
    source = app_database(credentials=f"sqlite:///{demo / 'app.sqlite'}", backend=backend, chunk_size=250)
    chunks = items(source, "transactions")
    assert len(chunks) > 1 and all(isinstance(chunk, pa.Table) for chunk in chunks)
    ids = pa.concat_tables(chunks).column("_dlt_id").to_pylist()
    assert len(ids) == len(set(ids)), "row ids must be unique"


def test_event_files_arrive_as_few_large_arrow_tables(demo: Path) -> None:
    files = list((demo / "events").rglob("*.parquet"))
    tables, file_rows = data_and_file_rows(event_stream(bucket_url=str(demo / "events")), "events")
    assert all(isinstance(table, pa.Table) for table in tables)
    assert len(file_rows) == len(files) and all(row["is_readable"] for row in file_rows)
    assert len(tables) < len(files) / 10  # many small batch files, concatenated
    combined = pa.concat_tables(tables)
    assert combined.num_rows == sum(pq.read_metadata(path).num_rows for path in files)
    assert len(combined.column("_dlt_id").unique()) == combined.num_rows


def test_chargeback_files_arrive_as_all_text_arrow(demo: Path) -> None:
    tables, file_rows = data_and_file_rows(bucket_files(bucket_url=str(demo / "bucket" / "chargebacks")), "chargebacks")
    assert file_rows and all(row["is_readable"] for row in file_rows)
    assert tables and all(isinstance(table, pa.Table) for table in tables)
    for name in ("transaction_id", "reported_at", "reason"):
        assert all(table.schema.field(name).type == pa.string() for table in tables)
