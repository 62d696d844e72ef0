"""The settings a run reads from the environment (so `pipeline run`, a schedule and the UI agree).

DBT_TARGET   the dbt target in profiles.yml (default dev, DuckDB); `bigquery` loads and builds
             in BigQuery, and the export and training steps (which read the local published
             file) do nothing there
"""

import os


def dbt_target() -> str:
    return os.environ.get("DBT_TARGET", "dev")


def on_duckdb() -> bool:
    return dbt_target() != "bigquery"


def destination() -> str:
    """The dlt destination of the dbt target."""
    return "duckdb" if on_duckdb() else "bigquery"
