"""Files a source cannot read reach the quarantine: one `unreadable_file` row per file, with its reason.

A chargeback folder with one good and one corrupt file, through the real extract and `dbt build`:
the corrupt file is in int_quarantined_rows (keyed by its path, the reader's error as the reason),
the good file's rows flow through to validation, every raw row and file is accounted for in
monitoring.row_reconciliation, and the pipeline's raw row count does not take the rejection for
loaded rows.
"""

import sqlite3
from pathlib import Path

import duckdb
import pytest
from extract_support import Workspace, workspace

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import run_dbt
from pipeline.warehouse.monitoring import newest_rows

RUN_DATE = "2026-09-30"
CORRUPT = b"PAR1 this is not a parquet file"


def chargebacks_folder(space: Workspace, rows: int) -> Path:
    """A folder with `good.csv` (chargebacks of `rows` real demo transactions) and `corrupt.parquet`."""
    with sqlite3.connect(space.demo_dir / "app.sqlite") as app:
        ids = app.execute(
            "select transaction_id from transactions where status = 'completed' and currency = 'USD' "
            "and created_at < '2026-06-01' order by transaction_id limit ?",
            [rows],
        ).fetchall()
    folder = space.data_dir / "my_chargebacks"
    folder.mkdir()
    lines = ["transaction_id,reported_at,reason", *(f"{id_},2026-08-01 10:00:00,fraud" for (id_,) in ids)]
    (folder / "good.csv").write_text("\n".join(lines) + "\n")
    (folder / "corrupt.parquet").write_bytes(CORRUPT)
    return folder


def test_a_corrupt_chargeback_file_is_quarantined_and_the_good_rows_flow_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=7, scale=300)
    folder = chargebacks_folder(space, rows=4)
    monkeypatch.setenv("SOURCES__BUCKET_FILES__DEMO", "false")
    monkeypatch.setenv("SOURCES__BUCKET_FILES__BUCKET_URL", str(folder))
    loads = {name: load_source(name) for name in SOURCES}
    assert loads["chargebacks"].rows == {"chargebacks": 4}
    [(path, reason)] = loads["chargebacks"].rejected_files
    assert path == "corrupt.parquet" and reason

    build = run_dbt(["build"], dbt_vars={"run_date": RUN_DATE}, quiet=True)
    assert build.success, build.failures

    # the corrupt file: one quarantine row, keyed by its path, with the reader's reason
    [quarantined] = space.query(
        "select source_table, record_key, rejection_rule, rejection_reason, raw_values "
        "from intermediate.int_quarantined_rows where rejection_rule = 'unreadable_file'"
    )
    assert quarantined[:3] == ("chargebacks.chargebacks", "corrupt.parquet", "unreadable_file")
    assert reason in quarantined[3] and "corrupt.parquet" in quarantined[3]
    assert f"size={len(CORRUPT)}" in quarantined[4]

    # the good file's rows flow through: staged and valid, each with its transaction
    assert space.query(
        "select count(*), count(*) filter (where rejection_rule is null) from intermediate.int_chargebacks_validated"
    ) == [(4, 4)]

    # every raw row and the rejected file are accounted for: 4 rows + 1 file, 4 valid, 1 quarantined
    assert space.query(
        "select sum(raw_rows), sum(staged_rows), sum(valid_rows), sum(quarantined_rows), sum(unaccounted_rows) "
        "from monitoring.row_reconciliation where source_table = 'chargebacks.chargebacks'"
    ) == [(5, 5, 4, 1, 0)]
    assert space.query(
        "select rejection_rule, quarantined_rows, example_record_key from monitoring.quarantine_summary "
        "where source_table = 'chargebacks.chargebacks'"
    ) == [("unreadable_file", 1, "corrupt.parquet")]

    # the pipeline's raw row count (freshness, run summary) counts loaded rows, not rejections
    with duckdb.connect(str(space.duckdb_path), read_only=True) as connection:
        rows, _ = newest_rows(connection, "chargebacks")
    assert rows == 4
