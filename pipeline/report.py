"""The run report: one self-contained HTML page, regenerated after every run.

    <data dir>/reports/index.html

Runs (status, time per stage), rows loaded per source and rows per gold table over the runs, dbt
test results, quarantined rows, source freshness, open alerts, and the distributions of the main
features (the train split against the latest week). Charts are inline SVG (pipeline/svg.py): the
page needs no server, script or network, so it can be attached to a ticket or published as is.
"""

import datetime as dt
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

import duckdb

from extract.load import data_dir
from pipeline import svg
from pipeline.alerts import Alert, open_alerts
from pipeline.console import age, log, seconds, timestamp
from pipeline.monitoring import Freshness, has_monitoring, quarantine_counts, source_freshness
from pipeline.retry import RetryPolicy
from pipeline.run_log import utc_now
from pipeline.warehouse import WarehouseLocked, connect, relation_exists

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
STAGE_COLORS = {
    "extract": svg.PALETTE[0],
    "build": svg.PALETTE[1],
    "export": svg.PALETTE[4],
    "train": svg.PALETTE[6],
    "realtime": svg.PALETTE[5],
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
.success,.ok{background:#59a14f}.failed,.killed,.error{background:#e15759}.skipped,.never{background:#9a9a9a}
.warn,.running{background:#e0a526}.alert{color:#b3261e;font-weight:600}.muted{color:#777}
"""


@dataclass
class Run:
    run_id: str
    command: str
    run_date: dt.date
    started_at: dt.datetime
    status: str
    seconds: float
    rows_loaded: int | None
    message: str

    @property
    def label(self) -> str:
        return f"{self.run_date:%m-%d}"


def report_file() -> Path:
    return data_dir() / "reports" / "index.html"


def runs(connection: duckdb.DuckDBPyConnection) -> list[Run]:
    rows = connection.execute(
        """
        select * from (
            select run_id, command, run_date, started_at, status,
                coalesce(seconds, epoch(ended_at - started_at)), rows_loaded, coalesce(message, '')
            from monitoring.pipeline_runs order by started_at desc limit ?
        ) order by started_at
        """,
        [RUNS_SHOWN],
    ).fetchall()
    return [Run(*row) for row in rows]


def per_run(connection: duckdb.DuckDBPyConnection, sql: str, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """{series: {run_id: value}} from a query of (run_id, series, value) over `run_ids`."""
    result: dict[str, dict[str, float]] = {}
    for run_id, name, value in connection.execute(sql, [run_ids]).fetchall():
        result.setdefault(str(name), {})[run_id] = float(value or 0)
    return result


def run_charts(connection: duckdb.DuckDBPyConnection, shown: list[Run]) -> list[str]:
    ids, labels = [run.run_id for run in shown], [run.label for run in shown]
    stage_seconds = per_run(
        connection,
        "select run_id, stage, seconds from monitoring.pipeline_stage_runs where run_id in (select unnest(?))",
        ids,
    )
    loaded = per_run(
        connection,
        "select run_id, source, sum(rows_loaded) from monitoring.source_rows "
        "where run_id in (select unnest(?)) group by all",
        ids,
    )
    gold = per_run(
        connection,
        "select run_id, name, rows_out from monitoring.model_row_counts "
        "where layer = 'marts' and materialized <> 'view' and run_id in (select unnest(?))",
        ids,
    )
    tests = per_run(
        connection,
        "select run_id, status, count(*) from monitoring.dbt_node_results "
        "where resource_type = 'test' and run_id in (select unnest(?)) group by all",
        ids,
    )
    label_of = dict(zip(ids, labels, strict=True))
    built = [i for i in ids if any(i in values for values in gold.values())]  # builds that succeeded
    tested = [i for i in ids if any(i in values for values in tests.values())]  # builds, failed ones too
    stages = {name: [stage_seconds[name].get(i, 0.0) for i in ids] for name in STAGE_COLORS if name in stage_seconds}
    colors = {name: STAGE_COLORS[name] for name in stages}
    test_colors = {"pass": "#59a14f", "warn": "#e0a526", "fail": "#e15759", "error": "#8b1a1a"}
    return [
        svg.stacked_bars(
            "Run duration by stage (strip: run status)", labels, stages, colors, [run.status for run in shown], " s"
        ),
        svg.line_chart(
            "Rows loaded per run, by source",
            labels,
            {name: [values.get(i, 0.0) for i in ids] for name, values in sorted(loaded.items())},
        ),
        svg.line_chart(
            "Rows in each gold table after each successful build",
            [label_of[i] for i in built],
            {name: [values.get(i) for i in built] for name, values in sorted(gold.items())},
        ),
        svg.stacked_bars(
            "dbt tests per build",
            [label_of[i] for i in tested],
            {s: [tests[s].get(i, 0.0) for i in tested] for s in test_colors if s in tests},
            {s: c for s, c in test_colors.items() if s in tests},
        ),
    ]


def runs_table(shown: list[Run]) -> str:
    rows = "".join(
        f"<tr><td>{escape(run.run_id)}</td><td>{escape(run.command)}</td><td>{run.run_date}</td>"
        f"<td>{timestamp(run.started_at)}</td><td class=n>{seconds(run.seconds)}</td>"
        f"<td><span class='badge {run.status}'>{run.status}</span></td>"
        f"<td class=n>{'' if run.rows_loaded is None else f'{run.rows_loaded:,}'}</td>"
        f"<td class=muted>{escape(run.message.splitlines()[0] if run.message else '')[:140]}</td></tr>"
        for run in reversed(shown[-15:])
    )
    return (
        "<table><tr><th>run</th><th>command</th><th>run date</th><th>started (UTC)</th><th>time</th>"
        f"<th>status</th><th>rows loaded</th><th>message</th></tr>{rows}</table>"
    )


def failing_tests(connection: duckdb.DuckDBPyConnection) -> str:
    last = connection.sql(
        "select run_id from monitoring.pipeline_runs where dbt_invocation_id is not null "
        "order by started_at desc limit 1"
    ).fetchall()
    if not last:
        return "<p class=muted>no build yet</p>"
    rows = connection.execute(
        "select unique_id, status, failures, message from monitoring.dbt_node_results "
        "where run_id = ? and status in ('fail', 'error', 'warn') order by status, unique_id",
        [last[0][0]],
    ).fetchall()
    if not rows:
        return "<p>Every test of the latest build passed.</p>"
    body = "".join(
        f"<tr><td>{escape(uid.split('.')[2])}</td><td><span class='badge {'warn' if s == 'warn' else 'failed'}'>"
        f"{s}</span></td><td class=n>{f or 0:,}</td><td class=muted>{escape((m or '')[:160])}</td></tr>"
        for uid, s, f, m in rows
    )
    return f"<table><tr><th>node</th><th>status</th><th>failing rows</th><th>message</th></tr>{body}</table>"


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


def bins_for(connection: duckdb.DuckDBPyConnection, union: str) -> tuple[float, float, int] | None:
    """(low, width, bins) over the 1st..99th percentile; whole-number bins for whole-number features."""
    [(low, high, whole, lowest, highest)] = connection.sql(
        f"select quantile_cont(x, 0.01), quantile_cont(x, 0.99), bool_and(x = floor(x)), "
        f"quantile_disc(x, 0.01), quantile_disc(x, 0.99) from ({union}) where x is not null"
    ).fetchall()
    if low is None:
        return None
    if whole:
        low, high = float(lowest), float(highest)
        width = max(1.0, float(math.ceil((high - low + 1) / BINS)))
        return low, width, int((high - low) // width) + 1
    low, high = float(low), float(high)
    return low, ((high - low) / BINS) or 1.0, BINS


def feature_histogram(connection: duckdb.DuckDBPyConnection, feature: str, samples: dict[str, str]) -> str:
    """Histogram of `feature` for each named sample (a select of rows); the ends hold the tails."""
    value = f"cast({feature} as double)"
    union = " union all ".join(f"select {value} as x from ({sql})" for sql in samples.values())
    found = bins_for(connection, union)
    if found is None:
        return svg.empty(feature)
    low, width, bins = found
    series = {}
    for name, sql in samples.items():
        counts = dict(
            connection.sql(
                f"select least(greatest(floor((x - {low}) / {width}), 0), {bins - 1})::int, count(*) "
                f"from (select {value} as x from ({sql})) where x is not null group by 1"
            ).fetchall()
        )
        total = sum(counts.values())
        if total:
            series[name] = [100 * counts.get(i, 0) / total for i in range(bins)]
    edges = [low + i * width for i in range(bins + 1)]
    whole = width.is_integer() and low.is_integer()
    labels = [svg.short(edge if whole and width == 1 else edge + width / 2) for edge in edges[:-1]]
    return svg.histogram(feature, labels, edges, series)


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
    samples = {"all rows": "select * from marts.fct_transaction_features", "last 7 days": recent}
    splits = ""
    if relation_exists(connection, "marts", "training_set"):
        split_rows = connection.sql(
            "select split, count(*), avg(is_fraud::int) from marts.training_set "
            "group by all order by min(transaction_date)"
        ).fetchall()
        if any(split == "train" and count for split, count, _ in split_rows):
            samples = {"train split": "select * from marts.training_set where split = 'train'", "last 7 days": recent}
        splits = "".join(
            f"<tr><td>{split}</td><td class=n>{count:,}</td><td class=n>{(rate or 0):.2%}</td></tr>"
            for split, count, rate in split_rows
        )
        splits = (
            f"<table style='width:auto'><tr><th>split</th><th>rows</th><th>fraud rate</th></tr>{splits}</table>"
            if splits
            else "<p class=muted>no matured labels yet: the training set is empty</p>"
        )
    charts = "".join(feature_histogram(connection, name, samples) for name in FEATURES if name in columns)
    note = (
        f"<p class=muted>{rows:,} rows up to {latest}; share of rows per bin (1st to 99th percentile, "
        "the ends hold the tails)</p>"
    )
    return f"{note}<div class=grid>{charts}</div><h2 style='margin-top:14px'>Training set</h2>{splits}"


def kpis(shown: list[Run], alerts: list[Alert], freshness: list[Freshness]) -> str:
    last = shown[-1] if shown else None
    stale = sum(1 for f in freshness if f.state in ("warn", "error"))
    items = [
        (f"<span class='badge {last.status}'>{last.status}</span>" if last else "-", "last run"),
        (seconds(last.seconds) if last else "-", "its duration"),
        (f"{last.rows_loaded:,}" if last and last.rows_loaded is not None else "-", "rows it loaded"),
        (str(len(shown)), "runs shown"),
        (f"<span class={'alert' if alerts else ''}>{len(alerts)}</span>", "open alerts"),
        (str(stale), "stale sources"),
    ]
    return (
        "<div class=kpis>"
        + "".join(f"<div class=kpi><b>{value}</b><span>{name}</span></div>" for value, name in items)
        + "</div>"
    )


def render(connection: duckdb.DuckDBPyConnection, now: dt.datetime) -> str:
    shown = runs(connection) if has_monitoring(connection) else []
    alerts = open_alerts(connection) if relation_exists(connection, "monitoring", "alerts") else []
    freshness = source_freshness(connection, now)
    quarantined = quarantine_counts(connection)
    charts = "".join(run_charts(connection, shown)) if shown else svg.empty("Runs", "no runs recorded yet")
    sections = [
        ("Alerts", alerts_block(alerts)),
        ("Runs", f"<div class=grid>{charts}</div>{runs_table(shown)}"),
        ("Tests of the latest build", failing_tests(connection) if shown else ""),
        (
            "Quarantined rows, by source table and rule",
            svg.horizontal_bars(
                "Rows rejected with a reason (intermediate.int_quarantined_rows)",
                [f"{table} · {rule}" for table, rule, _, _ in quarantined],
                [float(count) for _, _, count, _ in quarantined],
            ),
        ),
        ("Source freshness (time since dlt last loaded rows)", freshness_table(freshness)),
        ("Feature distributions (marts.fct_transaction_features)", feature_section(connection)),
    ]
    body = "".join(f"<section><h2>{title}</h2>{content}</section>" for title, content in sections)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ml-features pipeline report</title>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body>"
        f"<header><h1>ml-features pipeline report</h1><p>generated {timestamp(now)} UTC from the run log in "
        f"the warehouse's monitoring schema</p></header><main>{kpis(shown, alerts, freshness)}<br>{body}</main>"
        "</body></html>\n"
    )


def write_report(duckdb_path: str, policy: RetryPolicy | None = None, path: Path | None = None) -> Path | None:
    """Regenerate the report; None (and a log line) when the warehouse is locked."""
    path = path or report_file()
    try:
        with connect(duckdb_path, read_only=True, policy=policy, prefix="[report] ") as connection:
            html = render(connection, utc_now())
    except WarehouseLocked as error:
        log(f"[report] not regenerated: {error}")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".html.tmp")
    temporary.write_text(html)
    temporary.replace(path)
    return path
