"""The run report: one self-contained HTML page, regenerated after every run.

    <data dir>/reports/index.html

From Dagster's records (orchestration/monitoring.py): runs (status, time per step), rows loaded per
source and rows per gold table over the runs, dbt test results, open alerts, the load lineage (dlt
load -> run -> dbt invocation). From the warehouse: quarantined rows and source freshness. From the
published gold file: the distributions of the main features (the train split against the latest
week). Charts are inline SVG (pipeline/reporting/svg.py): the page needs no server, script or network, so it
can be attached to a ticket or published as is.
"""

import datetime as dt
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import duckdb
from dagster import DagsterInstance

from extract.load import data_dir, duckdb_path
from orchestration.history import LoadLineage, RunInfo, load_lineage, recent_runs
from orchestration.monitoring import open_alerts, utc_now
from orchestration.settings import on_duckdb
from pipeline.console import age, log, seconds, timestamp
from pipeline.reporting import svg
from pipeline.reporting.alerts import Alert
from pipeline.warehouse.connections import WarehouseLocked, connect, relation_exists
from pipeline.warehouse.monitoring import Freshness, quarantine_counts, source_freshness
from pipeline.warehouse.published import published_path

RUNS_SHOWN = 60
FEATURES = [
    "amount_usd",
    "hour_of_day",
    "user_txn_count_7d",
    "user_amount_sum_30d",
    "seconds_since_prev_txn",
    "session_events_before_txn",
    "user_tenure_days",
    "age",
]
BINS = 20
SAMPLE_ROWS = 100_000  # per series of a feature histogram
STEP_COLORS = {
    "extract": svg.PALETTE[0],
    "dbt_models": svg.PALETTE[1],
    "training_set_export": svg.PALETTE[4],
    "fraud_model": svg.PALETTE[6],
    "checks": svg.PALETTE[8],
}
CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2a37;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c8d0da;font-size:13px}
main{padding:18px 28px;max-width:1340px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:14px 18px;margin:0 0 18px}
h2{font-size:15px;margin:0 0 10px}
.kpis{display:flex;gap:14px;flex-wrap:wrap}.kpi{background:#fff;border:1px solid #e2e5ea;border-radius:8px;
padding:10px 16px;min-width:140px}.kpi b{display:block;font-size:20px}.kpi span{color:#666;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse;font-size:12px;width:100%}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #eee;white-space:nowrap}th{color:#555;font-weight:600}
td.muted{white-space:normal}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:11px}
.success,.ok{background:#59a14f}.failure,.canceled,.error{background:#e15759}.skipped,.never{background:#9a9a9a}
.warn,.started,.queued{background:#e0a526}.alert{color:#b3261e;font-weight:600}.muted{color:#777}
"""


def report_file() -> Path:
    return data_dir() / "reports" / "index.html"


def label(run: RunInfo) -> str:
    return f"{run.partition[5:] or '-'} {run.started_at:%H:%M}" if run.started_at else run.run_id[:8]


def step_group(step: str) -> str:
    return "extract" if step.startswith("extract_") else step if step in STEP_COLORS else "checks"


def run_charts(shown: list[RunInfo]) -> list[str]:
    """Charts over the runs shown (oldest first)."""
    labels = [label(run) for run in shown]
    steps: dict[str, list[float]] = {name: [0.0] * len(shown) for name in STEP_COLORS}
    for index, run in enumerate(shown):
        for step, (_, took) in run.steps.items():
            steps[step_group(step)][index] += took
    steps = {name: values for name, values in steps.items() if any(values)}
    sources = sorted({source for run in shown for source in run.rows_loaded})
    loaded = [run for run in shown if run.rows_loaded]
    built = [run for run in shown if run.gold_rows]
    tables = sorted({table for run in built for table in run.gold_rows})
    tested = [run for run in shown if run.tests]
    test_colors = {"pass": "#59a14f", "warn": "#e0a526", "fail": "#e15759"}
    statuses = [status for status in test_colors if any(run.tests.get(status) for run in tested)]
    return [
        svg.stacked_bars(
            "Run duration by step (strip: run status)",
            labels,
            steps,
            {name: STEP_COLORS[name] for name in steps},
            [run.status.lower() for run in shown],
            " s",
        ),
        svg.line_chart(
            "Rows loaded per run, by source",
            [label(run) for run in loaded],
            {source: [float(run.rows_loaded.get(source, 0)) for run in loaded] for source in sources},
        ),
        svg.line_chart(
            "Rows in each gold table after each successful build",
            [label(run) for run in built],
            {table: [run.gold_rows.get(table) for run in built] for table in tables},
        ),
        svg.stacked_bars(
            "dbt tests per build",
            [label(run) for run in tested],
            {s: [float(run.tests.get(s, 0)) for run in tested] for s in statuses},
            {s: test_colors[s] for s in statuses},
        ),
    ]


def runs_table(shown: list[RunInfo]) -> str:
    rows = "".join(
        f"<tr><td>{escape(run.run_id[:8])}</td><td>{escape(run.job)}</td><td>{escape(run.partition)}</td>"
        f"<td>{timestamp(run.started_at)}</td><td class=n>{seconds(run.seconds)}</td>"
        f"<td><span class='badge {run.status.lower()}'>{run.status.lower()}</span></td>"
        f"<td class=n>{'' if run.total_rows_loaded is None else f'{run.total_rows_loaded:,}'}</td>"
        f"<td>{escape(run.alerts if run.alerts != 'none' else '')}</td>"
        f"<td class=muted>{escape(run.message.splitlines()[0] if run.message else '')[:140]}</td></tr>"
        for run in reversed(shown[-15:])
    )
    return (
        "<table><tr><th>run</th><th>job</th><th>partition</th><th>started (UTC)</th><th>time</th>"
        f"<th>status</th><th>rows loaded</th><th>alerts</th><th>message</th></tr>{rows}</table>"
    )


def failing_tests(shown: list[RunInfo]) -> str:
    last = next((run for run in reversed(shown) if run.tests), None)
    if last is None:
        return "<p class=muted>no build yet</p>"
    if not last.failing_tests:
        return f"<p>Every test of the latest build (run {escape(last.run_id[:8])}) passed.</p>"
    body = "".join(
        f"<tr><td>{escape(test)}</td><td>{escape(asset)}</td>"
        f"<td><span class='badge {'warn' if status == 'warn' else 'failure'}'>{status}</span></td>"
        f"<td class=n>{rows:,}</td></tr>"
        for test, asset, status, rows in last.failing_tests
    )
    return (
        f"<p class=muted>run {escape(last.run_id[:8])}</p><table><tr><th>test</th><th>asset</th><th>status</th>"
        f"<th>failing rows</th></tr>{body}</table>"
    )


def lineage_table(lineage: list[LoadLineage], gold_invocation: str | None) -> str:
    if not lineage:
        return "<p class=muted>no dlt loads recorded yet</p>"
    body = "".join(
        f"<tr><td>{escape(row.source)}</td><td>{escape(row.load_id)}</td><td>{escape(row.run_id[:8])}</td>"
        f"<td>{escape(row.partition)}</td><td>{escape(row.run_status.lower())}</td>"
        f"<td>{escape((row.built_by_run or '')[:8])}</td><td>{escape(row.dbt_invocation_id or 'not built yet')}</td>"
        f"<td>{'yes' if gold_invocation and row.dbt_invocation_id == gold_invocation else ''}</td></tr>"
        for row in lineage[:40]
    )
    return (
        "<table><tr><th>source</th><th>dlt load id</th><th>loaded by run</th><th>partition</th><th>run status</th>"
        "<th>built by run</th><th>dbt invocation</th><th>in the gold now</th></tr>"
        f"{body}</table><p class=muted>gold now: dbt invocation {escape(gold_invocation or '-')} "
        "(marts.preprocessing_parameters.fitted_by_invocation_id)</p>"
    )


def freshness_table(freshness: list[Freshness]) -> str:
    body = "".join(
        f"<tr><td>{f.source}</td><td class=n>{f.rows:,}</td><td>{timestamp(f.last_rows_loaded_at)}</td>"
        f"<td class=n>{age(f.lag_seconds) if f.lag_seconds is not None else '-'}</td>"
        f"<td><span class='badge {f.state.split()[0]}'>{f.state}</span></td>"
        f"<td class=muted>{'' if f.warn_after is None else age(f.warn_after)} / "
        f"{'' if f.error_after is None else age(f.error_after)}</td></tr>"
        for f in freshness
    )
    return (
        "<table><tr><th>source</th><th>raw rows</th><th>rows last loaded (UTC)</th><th>lag</th><th>state</th>"
        f"<th>warn / error after</th></tr>{body}</table>"
    )


def alerts_block(alerts: list[Alert]) -> str:
    if not alerts:
        return "<p>No open alerts.</p>"
    return "".join(f"<p class=alert>{escape(alert.line())}</p>" for alert in alerts)


def columns_of(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    rows = connection.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()
    return {name for (name,) in rows}


def feature_sample(connection: duckdb.DuckDBPyConnection, series: dict[str, str], features: list[str]) -> None:
    """Up to SAMPLE_ROWS rows of each series (a select of rows), its features as doubles, in the temp
    table feature_sample: one read of each series for every chart (the gold tables are views over
    millions of rows; reading them per feature and per bin took 41 s of a new day's run at 10M)."""
    values = ", ".join(f"cast({feature} as double) as {feature}" for feature in features)
    samples = [
        f"select '{name}' as series, {values} from ({sql}) using sample reservoir({SAMPLE_ROWS} rows) repeatable (42)"
        for name, sql in series.items()
    ]
    connection.execute(f"create or replace temp table feature_sample as {' union all '.join(samples)}")


def bins_for(connection: duckdb.DuckDBPyConnection, feature: str) -> tuple[float, float, int] | None:
    """(low, width, bins) over the 1st..99th percentile; whole-number bins for whole-number features."""
    x = feature
    [(low, high, whole, lowest, highest)] = connection.sql(
        f"select quantile_cont({x}, 0.01), quantile_cont({x}, 0.99), bool_and({x} = floor({x})), "
        f"quantile_disc({x}, 0.01), quantile_disc({x}, 0.99) from feature_sample where {x} is not null"
    ).fetchall()
    if low is None:
        return None
    if whole:
        low, high = float(lowest), float(highest)
        width = max(1.0, float(math.ceil((high - low + 1) / BINS)))
        return low, width, int((high - low) // width) + 1
    low, high = float(low), float(high)
    return low, ((high - low) / BINS) or 1.0, BINS


def feature_histogram(connection: duckdb.DuckDBPyConnection, feature: str, series: list[str]) -> str:
    """Histogram of `feature` for each series of feature_sample; the ends hold the tails."""
    found = bins_for(connection, feature)
    if found is None:
        return svg.empty(feature)
    low, width, bins = found
    counted = connection.sql(
        f"select series, least(greatest(floor(({feature} - {low}) / {width}), 0), {bins - 1})::int, count(*) "
        f"from feature_sample where {feature} is not null group by all"
    ).fetchall()
    shares = {}
    for name in series:
        counts = {bin: count for of, bin, count in counted if of == name}
        total = sum(counts.values())
        if total:
            shares[name] = [100 * counts.get(i, 0) / total for i in range(bins)]
    edges = [low + i * width for i in range(bins + 1)]
    whole = width.is_integer() and low.is_integer()
    labels = [svg.short(edge if whole and width == 1 else edge + width / 2) for edge in edges[:-1]]
    return svg.histogram(feature, labels, edges, shares)


def feature_section(connection: duckdb.DuckDBPyConnection) -> str:
    if not relation_exists(connection, "marts", "fct_transaction_features"):
        return "<p class=muted>marts.fct_transaction_features is not built yet.</p>"
    columns = columns_of(connection, "marts", "fct_transaction_features")
    [(rows, latest)] = connection.sql(
        "select count(*), max(transaction_date) from marts.fct_transaction_features"
    ).fetchall()
    if not rows:
        return "<p class=muted>marts.fct_transaction_features has no rows yet.</p>"
    recent = f"select * from marts.fct_transaction_features where transaction_date > date '{latest}' - 7"
    series = {"all rows": "select * from marts.fct_transaction_features", "last 7 days": recent}
    splits = ""
    if relation_exists(connection, "marts", "training_set"):
        split_rows = connection.sql(
            "select split, count(*), avg(is_fraud::int) from marts.training_set "
            "group by all order by min(transaction_date)"
        ).fetchall()
        if any(split == "train" and count for split, count, _ in split_rows):
            series = {"train split": "select * from marts.training_set where split = 'train'", "last 7 days": recent}
        splits = "".join(
            f"<tr><td>{split}</td><td class=n>{count:,}</td><td class=n>{(rate or 0):.2%}</td></tr>"
            for split, count, rate in split_rows
        )
        splits = (
            f"<table style='width:auto'><tr><th>split</th><th>rows</th><th>fraud rate</th></tr>{splits}</table>"
            if splits
            else "<p class=muted>no matured labels yet: the training set is empty</p>"
        )
    features = [name for name in FEATURES if name in columns]
    feature_sample(connection, series, features)
    charts = "".join(feature_histogram(connection, name, list(series)) for name in features)
    note = (
        f"<p class=muted>{rows:,} rows up to {latest}; share of rows per bin (1st to 99th percentile, "
        f"the ends hold the tails), from a random sample of up to {SAMPLE_ROWS:,} rows of each series</p>"
    )
    return f"{note}<div class=grid>{charts}</div><h2 style='margin-top:14px'>Training set</h2>{splits}"


def kpis(shown: list[RunInfo], alerts: list[Alert], freshness: list[Freshness]) -> str:
    last = shown[-1] if shown else None
    stale = sum(1 for f in freshness if f.state in ("warn", "error"))
    loaded = last.total_rows_loaded if last else None
    items = [
        (f"<span class='badge {last.status.lower()}'>{last.status.lower()}</span>" if last else "-", "last run"),
        (seconds(last.seconds) if last else "-", "its duration"),
        (f"{loaded:,}" if loaded is not None else "-", "rows it loaded"),
        (str(len(shown)), "runs shown"),
        (f"<span class={'alert' if alerts else ''}>{len(alerts)}</span>", "open alerts"),
        (str(stale), "stale sources"),
    ]
    return (
        "<div class=kpis>"
        + "".join(f"<div class=kpi><b>{value}</b><span>{name}</span></div>" for value, name in items)
        + "</div>"
    )


def gold_invocation(connection: duckdb.DuckDBPyConnection) -> str | None:
    if not relation_exists(connection, "marts", "preprocessing_parameters"):
        return None
    rows = connection.sql("select fitted_by_invocation_id from marts.preprocessing_parameters").fetchall()
    return rows[0][0] if rows else None


@dataclass
class WarehouseFacts:
    """What the report reads from the warehouse itself (the rest comes from the published gold)."""

    freshness: list[Freshness]
    quarantined: list[tuple[str, str, int, str]]


def warehouse_facts(now: dt.datetime) -> WarehouseFacts | None:
    """Source freshness and the quarantine, read in one short connection (a run may be waiting to
    write); None when the warehouse is not a local DuckDB file or not there yet."""
    if not on_duckdb() or not Path(duckdb_path()).exists():
        return None
    with connect(duckdb_path(), read_only=True) as connection:
        return WarehouseFacts(source_freshness(connection, now), quarantine_counts(connection))


def render(
    instance: DagsterInstance, facts: WarehouseFacts | None, gold: duckdb.DuckDBPyConnection | None, now: dt.datetime
) -> str:
    """The page from Dagster's records, the warehouse's `facts` and the published `gold` file (None: a
    warehouse not on DuckDB, or nothing published yet)."""
    shown = recent_runs(instance, RUNS_SHOWN)[::-1]  # oldest first
    alerts = open_alerts(instance, now)
    freshness = facts.freshness if facts else []
    quarantined = facts.quarantined if facts else []
    charts = "".join(run_charts(shown)) if shown else svg.empty("Runs", "no runs recorded yet")
    sections = [
        ("Alerts", alerts_block(alerts)),
        ("Runs", f"<div class=grid>{charts}</div>{runs_table(shown)}"),
        ("Tests of the latest build", failing_tests(shown)),
        (
            "Quarantined rows, by source table and rule",
            svg.horizontal_bars(
                "Rows rejected with a reason (intermediate.int_quarantined_rows)",
                [f"{table} · {rule}" for table, rule, _, _ in quarantined],
                [float(count) for _, _, count, _ in quarantined],
            ),
        ),
        ("Source freshness (time since dlt last loaded rows)", freshness_table(freshness)),
        (
            "Load lineage (dlt load -> Dagster run -> dbt invocation)",
            lineage_table(load_lineage(shown[::-1]), gold_invocation(gold) if gold else None),
        ),
        (
            "Feature distributions (marts.fct_transaction_features, as published)",
            feature_section(gold) if gold else "<p class=muted>no gold published to a local file yet</p>",
        ),
    ]
    body = "".join(f"<section><h2>{title}</h2>{content}</section>" for title, content in sections)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ml-features pipeline report</title>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>"
        f"<header><h1>ml-features pipeline report</h1><p>generated {timestamp(now)} UTC from the Dagster "
        f"instance's run history and the warehouse</p></header><main>{kpis(shown, alerts, freshness)}<br>{body}"
        "</main></body></html>\n"
    )


def write_report(instance: DagsterInstance, path: Path | None = None) -> Path | None:
    """Regenerate the report; None (and a log line) when the warehouse is locked. The feature
    distributions are read from the published gold file, which no build locks, so a run that
    starts meanwhile is not kept waiting."""
    path = path or report_file()
    now = utc_now()
    try:
        facts = warehouse_facts(now)
    except WarehouseLocked as error:
        log(f"[report] not regenerated: {error}")
        return None
    if on_duckdb() and published_path().exists():
        with connect(str(published_path()), read_only=True) as gold:
            html = render(instance, facts, gold, now)
    else:
        html = render(instance, facts, None, now)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".html.tmp")
    temporary.write_text(html)
    temporary.replace(path)
    return path
