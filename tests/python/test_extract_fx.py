"""FX REST API source against the real demo HTTP server: paging, bearer token, retries on 429 and 5xx."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from extract_support import Workspace, workspace

from demo.fx_api_server import FxApiServer
from demo.generate import generate
from extract.load import load_source

TOKEN = "test-token"
PAGE_SIZE = 50


def fx_settings(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    """Point the fx source at `base_url` through its configuration, as a user would."""
    monkeypatch.setenv("SOURCES__FX_API__DEMO", "false")
    monkeypatch.setenv("SOURCES__FX_API__BASE_URL", base_url)
    monkeypatch.setenv("SOURCES__FX_API__TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__FX_API__PAGE_SIZE", str(PAGE_SIZE))
    # real exponential backoff, with a small factor to keep the test quick
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")


def expected_rates(path: Path) -> set[tuple[str, str, float]]:
    table = pq.read_table(path)
    return {(row["date"].isoformat(), row["currency"], row["rate_to_usd"]) for row in table.to_pylist()}


def loaded_rates(space: Workspace) -> list[tuple[str, str, float]]:
    return space.query("select date, currency, rate_to_usd from raw_fx.rates")


def test_failed_requests_are_retried_and_every_rate_arrives_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=3, scale=200)
    rates_file = space.demo_dir / "fx_rates.parquet"
    expected = expected_rates(rates_file)
    pages = -(-len(expected) // PAGE_SIZE)
    with FxApiServer(rates_file, token=TOKEN, fail_every=3) as server:
        fx_settings(monkeypatch, server.start())
        load = load_source("fx")
        # every third request was answered 503 or 429 and asked again
        assert server.request_count >= pages + pages // 2
        rows = loaded_rates(space)
        assert len(rows) == len(set(rows)) == len(expected)
        assert set(rows) == expected
        assert load.rows == {"rates": len(expected)}

        # the next run asks only for dates from the last loaded one on, and stores nothing twice
        requests_before = server.request_count
        again = load_source("fx")
        assert server.request_count - requests_before <= 2  # one page (plus a retried failure)
        assert sum(again.rows.values()) <= 5  # at most the last date's currencies, merged again
        assert sorted(loaded_rates(space)) == sorted(rows)
