"""What the BigQuery emulator (bqemulator 1.4.0) cannot run of this project: the one list.

tests/python/test_bigquery_emulator.py runs each step against the emulator and fails when a node
fails that is not listed here for that step, and when a listed node no longer fails (then shrink
the list). docs/bigquery.md shows this list. Each entry: the step, the dbt node, why the emulator
fails it, and the BigQuery documentation saying real BigQuery runs it. Nodes dbt skips because a
listed node failed are not listed: the test checks each skip has a listed failed ancestor.
"""

from dataclasses import dataclass

# the steps the test runs, in order
FIRST_BUILD = "first build"  # dbt build --exclude-resource-type unit_test, on an empty warehouse
UNIT_TESTS = "unit tests"  # dbt test --select resource_type:unit_test
INCREMENTAL_RUN = "incremental run"  # dbt run --select config.materialized:incremental, again
STEPS = (FIRST_BUILD, UNIT_TESTS, INCREMENTAL_RUN)

DOCS = "https://cloud.google.com/bigquery/docs/reference/standard-sql"


@dataclass(frozen=True)
class Limitation:
    step: str
    node: str  # the dbt unique_id
    emulator_fails: str
    bigquery_docs: str


QUOTE_IN_TRIPLE_QUOTED_STRING = (
    "the expected rows hold a quote: dbt-bigquery writes a fixture string as a triple-quoted literal "
    "with the quote escaped ('''it\\'s'''), and the emulator keeps the backslash in triple-quoted "
    "literals (select '''a\\'b''' returns a\\'b), so the expected value differs from the model's"
)
LITERALS_DOCS = f"{DOCS}/lexical#string_and_bytes_literals (escape sequences apply to all but raw literals)"

LIMITATIONS = (
    Limitation(
        FIRST_BUILD,
        "model.ml_features.row_reconciliation",
        "a union of the views stg_fx__rates, stg_events__rejected_files and stg_chargebacks__rejected_files "
        "(each `with source as (select * from raw_<source>.<table> where _dlt_load_id in (...))`) makes the "
        "emulator expand one view's `select *` with another table's columns: Binder Error: Table \"rejected_files\" "
        'does not have a column named "_batch_file" (any two of the three views union fine)',
        f"{DOCS}/query-syntax#union (set operations over views) and /bigquery/docs/views",
    ),
    Limitation(
        UNIT_TESTS,
        "unit_test.ml_features.row_reconciliation.every_raw_row_is_valid_quarantined_or_a_duplicate_and_a_lost_row_shows",
        "NOT only the emulator: dbt reads each unit-test input's columns from its relation, and the real-time "
        "path's raw_stream tables (source stream) exist only on DuckDB (the on-run-start hook "
        "create_stream_tables; no stream is loaded on BigQuery): Not able to get columns for unit test "
        "'_dlt_loads' from relation raw_stream._dlt_loads because the relation doesn't exist",
        "https://docs.getdbt.com/docs/build/unit-tests (inputs: the columns come from the warehouse)",
    ),
    Limitation(
        UNIT_TESTS,
        "unit_test.ml_features.int_chargebacks_validated.chargebacks_are_validated_and_only_the_first_report_counts",
        QUOTE_IN_TRIPLE_QUOTED_STRING,
        LITERALS_DOCS,
    ),
    Limitation(
        UNIT_TESTS,
        "unit_test.ml_features.int_fx_rates_validated.fx_rates_break_rules_in_order_and_explain_why",
        QUOTE_IN_TRIPLE_QUOTED_STRING,
        LITERALS_DOCS,
    ),
    Limitation(
        UNIT_TESTS,
        "unit_test.ml_features.int_transactions_validated.transactions_break_rules_in_priority_order_and_convert_to_usd",
        QUOTE_IN_TRIPLE_QUOTED_STRING
        + ". NOT only the emulator: the reason of created_at_in_future is written with cast(timestamp as "
        "string), which is '2099-01-01 00:00:00+00' on BigQuery (as on the emulator) and "
        "'2099-01-01 00:00:00' on DuckDB, so this test fails on real BigQuery too (a real difference, "
        "to fix in macros/cleaning/validate_transactions.sql)",
        LITERALS_DOCS,
    ),
    Limitation(
        UNIT_TESTS,
        "unit_test.ml_features.stg_app__transactions.transactions_parse_safely_from_completed_loads_only",
        "the emulator answers HTTP 500 to every poll of a query with safe_cast('infinity' as timestamp) "
        "(safe_to_timestamp on the fixture's bad timestamps), until the job timeout of the "
        "bigquery_emulator target (job_execution_timeout_seconds) fails the node",
        f"{DOCS}/conversion_functions#safe_casting (SAFE_CAST returns NULL instead of an error)",
    ),
    Limitation(
        INCREMENTAL_RUN,
        "model.ml_features.int_transactions_windowed",
        "dbt-bigquery's insert_overwrite script declares the partitions to replace with "
        "`array_agg(distinct date(...) ignore nulls)`, which the emulator's SQLGlot translation turns into "
        "`FILTER(WHERE NOT DISTINCT ...)` and rejects (Required keyword: 'this' missing for Not)",
        f"{DOCS}/aggregate_functions#array_agg (DISTINCT and IGNORE NULLS)",
    ),
    Limitation(
        INCREMENTAL_RUN,
        "model.ml_features.user_daily_features",
        "the same insert_overwrite script as int_transactions_windowed",
        f"{DOCS}/aggregate_functions#array_agg (DISTINCT and IGNORE NULLS)",
    ),
)


def listed(step: str) -> dict[str, Limitation]:
    """unique_id -> limitation, for one step."""
    return {limitation.node: limitation for limitation in LIMITATIONS if limitation.step == step}


def markdown() -> str:
    """The list as a Markdown table (docs/bigquery.md holds a copy; the test compares them)."""
    lines = ["| step | node | why the emulator fails it | BigQuery documentation |", "| --- | --- | --- | --- |"]
    for limitation in LIMITATIONS:
        name = limitation.node.split(".")[-1]
        lines.append(f"| {limitation.step} | `{name}` | {limitation.emulator_fails} | {limitation.bigquery_docs} |")
    return "\n".join(lines)
