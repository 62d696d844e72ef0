"""The run report's feature histograms read each series once, as a bounded random sample: the gold
tables are views over millions of rows, and reading them per feature and per bin took 41 s of a new
day's run at 10M transactions."""

from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance

from pipeline.reporting.report import SAMPLE_ROWS, bins_for, feature_sample, feature_section, write_report

ROWS = 3 * SAMPLE_ROWS


def test_each_series_is_sampled_once_and_keeps_its_distribution(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        # amount_usd uniform on 0..999.99, hour_of_day 0..23; the last 7 days hold a tenth of the rows
        connection.execute("create schema marts")
        connection.execute(
            "create table marts.fct_transaction_features as select (i * 7919) % 100000 / 100 as amount_usd, "
            f"i % 24 as hour_of_day, date '2026-01-01' + (i * 90 // {ROWS})::int as transaction_date "
            f"from range({ROWS}) t(i)"
        )
        series = {
            "all rows": "select * from marts.fct_transaction_features",
            "last 7 days": "select * from marts.fct_transaction_features where transaction_date > date '2026-03-25'",
        }
        feature_sample(connection, series, ["amount_usd", "hour_of_day"])
        sizes = dict(connection.sql("select series, count(*) from feature_sample group by all").fetchall())
        recent = connection.sql(f"select count(*) from ({series['last 7 days']})").fetchone()[0]
        assert sizes == {"all rows": SAMPLE_ROWS, "last 7 days": min(recent, SAMPLE_ROWS)}
        low, width, bins = bins_for(connection, "amount_usd")  # the 1st..99th percentile of 0..999
        assert 5 <= low <= 15 and 985 <= low + width * bins <= 995
        assert bins_for(connection, "hour_of_day") == (0.0, 2.0, 12)  # whole numbers: bins of whole hours

        html = feature_section(connection)
        assert f"{ROWS:,} rows up to 2026-03-31" in html
        assert html.count("<svg") == 2  # one histogram per feature the table has


def test_the_distributions_come_from_the_published_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report reads the features from the published gold file, which no build locks: not from the
    warehouse, where reading them kept a run that started meanwhile from writing."""
    published = tmp_path / "published" / "gold.duckdb"
    published.parent.mkdir()
    with duckdb.connect(str(published)) as connection:
        connection.execute("create schema marts")
        connection.execute(
            "create table marts.fct_transaction_features as select i * 1.5 as amount_usd, i % 24 as hour_of_day, "
            "date '2026-01-01' + (i // 100)::int as transaction_date from range(1000) t(i)"
        )
    monkeypatch.setenv("ML_FEATURES_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ML_FEATURES_DUCKDB_PATH", str(tmp_path / "no-warehouse-here.duckdb"))
    with DagsterInstance.ephemeral() as instance:
        html = write_report(instance).read_text()
    assert "1,000 rows up to 2026-01-10" in html and ">amount_usd<" in html and ">hour_of_day<" in html
