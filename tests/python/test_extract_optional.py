"""Sources a user does not have, and FX history from before 2000, through documented settings only.

`enabled = false` loads the contract's tables of a source with no rows, so dbt's staging models
find what they read; turned on again, the source's real data replaces them with its own types.
`sources.fx_api.start_date` is the first date a first FX load asks for, 1900-01-01 by default.
"""

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from extract_support import workspace

from demo.fx_api_server import FxApiServer
from demo.generate import generate
from extract.contract import OPTIONAL_TABLES
from extract.load import ExtractError, load_source

SECTIONS = {"events": "EVENT_STREAM", "fx": "FX_API", "chargebacks": "BUCKET_FILES"}


def turn_off(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    monkeypatch.setenv(f"SOURCES__{SECTIONS[source]}__ENABLED", "false")


@pytest.mark.parametrize("source", sorted(SECTIONS))
def test_a_source_turned_off_loads_its_contract_tables_empty_and_real_data_later(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    # no demo data is needed for a source that is turned off: nothing is read
    with monkeypatch.context() as off:
        turn_off(off, source)
        load = load_source(source)
    assert load.disabled and sum(load.rows.values()) == 0
    assert "turned off" in load.describe()
    for table, columns in OPTIONAL_TABLES[source].items():
        assert space.query(f"select count(*) from raw_{source}.{table}") == [(0,)]
        assert set(columns) <= set(space.columns(f"raw_{source}.{table}"))
        # a completed load, as staging reads only rows of completed loads
        assert space.query(f"select count(*) from raw_{source}._dlt_loads where status = 0") == [(1,)]

    # turned on: the demo's real data replaces the empty tables, with the types it comes with
    generate(space.demo_dir, seed=5, scale=300)
    load = load_source(source)
    assert not load.disabled and sum(load.rows.values()) > 0
    [table] = OPTIONAL_TABLES[source]
    assert space.query(f"select count(*) from raw_{source}.{table}") == [(load.rows[table],)]
    if source == "fx":
        types = {row[0]: row[1] for row in space.query("describe raw_fx.rates")}
        assert types["rate_to_usd"] == "DOUBLE"  # the API's numbers, not the empty table's text


def test_the_app_database_cannot_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace(tmp_path, monkeypatch)
    monkeypatch.setenv("SOURCES__APP_DATABASE__ENABLED", "false")
    with pytest.raises(ExtractError, match=r"sources\.app_database\.enabled .*every feature needs"):
        load_source("app")


def write_rates(path: Path, days: list[date]) -> None:
    pq.write_table(
        pa.table(
            {
                "date": pa.array(days, pa.date32()),
                "currency": ["EUR"] * len(days),
                "rate_to_usd": [1.1] * len(days),
            }
        ),
        path,
    )


def test_fx_history_before_2000_loads_by_default_and_start_date_is_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    rates = tmp_path / "rates.parquet"
    write_rates(rates, [date(1997, 1, 1), date(1997, 6, 30), date(2001, 3, 1)])
    with FxApiServer(rates, token="t0ken") as server:
        monkeypatch.setenv("SOURCES__FX_API__DEMO", "false")
        monkeypatch.setenv("SOURCES__FX_API__BASE_URL", server.start())
        monkeypatch.setenv("SOURCES__FX_API__TOKEN", "t0ken")
        load_source("fx")
        assert space.query("select min(date), count(*) from raw_fx.rates") == [("1997-01-01", 3)]

        other = workspace(tmp_path, monkeypatch, name="later")
        monkeypatch.setenv("SOURCES__FX_API__START_DATE", "1997-06-01")
        load_source("fx")
        assert other.query("select min(date), count(*) from raw_fx.rates") == [("1997-06-30", 2)]

        monkeypatch.setenv("SOURCES__FX_API__START_DATE", "June 1997")
        with pytest.raises(ExtractError, match=r"sources\.fx_api\.start_date = 'June 1997' is not a YYYY-MM-DD date"):
            load_source("fx")
