"""Alert rules against a run log with a made-up history: row drops against the trailing average,
stages slower than twice their usual time, an error rate over 1%; an alert's life from open to
resolved; `--strict` turning open alerts into a non-zero exit."""

import contextlib
import datetime as dt
import io
from pathlib import Path

import duckdb
import pytest
from conftest import demo_environment

from pipeline.alerts import Alert, evaluate, open_alerts, record
from pipeline.cli import main
from pipeline.run_log import ModelRows, RunRecord, StageRecord, ensure_schema, insert_run

NOW = dt.datetime(2026, 11, 25, 12, 0)


def past_run(
    hours_ago: float,
    rows: int = 1000,
    build_seconds: float = 20.0,
    gold_rows: int = 5000,
    status: str = "success",
    command: str = "run",
) -> RunRecord:
    started = NOW - dt.timedelta(hours=hours_ago)
    run = RunRecord(command=command, target="dev", run_date=started.date(), started_at=started, status=status)
    run.stages = [
        StageRecord("extract", started, started + dt.timedelta(seconds=4), "success", rows_out=rows),
        StageRecord(
            "build",
            started + dt.timedelta(seconds=4),
            started + dt.timedelta(seconds=4 + build_seconds),
            "success" if status == "success" else "failed",
        ),
        StageRecord("export", started, started + dt.timedelta(seconds=0.5), "success"),
    ]
    run.ended_at = run.stages[1].ended_at
    run.source_rows = [("events", "events", rows * 3 // 4), ("app", "transactions", rows - rows * 3 // 4)]
    run.model_rows = [
        ModelRows("model.ml_features.training_set", "training_set", "marts", "model", "table", "t", 9, gold_rows),
        ModelRows("model.ml_features.stg_x", "stg_x", "staging", "model", "view", "s", 9, gold_rows // 10),
    ]
    return run


@pytest.fixture
def log_db(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    ensure_schema(connection)
    yield connection
    connection.close()


def history(connection: duckdb.DuckDBPyConnection, *runs: RunRecord) -> None:
    for run in runs:
        insert_run(connection, run)


def firing(connection: duckdb.DuckDBPyConnection, run: RunRecord) -> dict[tuple[str, str], Alert]:
    insert_run(connection, run)
    return {alert.key: alert for alert in evaluate(connection, run, NOW).firing}


def steady(connection: duckdb.DuckDBPyConnection) -> None:
    """An initial load far bigger than the rest (left out of baselines), then four ordinary days."""
    history(connection, past_run(100, rows=100_000), *(past_run(90 - 10 * i, rows=1000 + 10 * i) for i in range(4)))


def test_rows_dropping_more_than_20_percent_alert(log_db: duckdb.DuckDBPyConnection) -> None:
    steady(log_db)
    assert firing(log_db, past_run(1, rows=900)) == {}  # -10%: normal variation
    alerts = firing(log_db, past_run(0.5, rows=700, gold_rows=3000))
    assert set(alerts) == {
        ("row_drop", "rows_loaded:all"),
        ("row_drop", "rows_loaded:events"),
        ("row_drop", "rows_loaded:app"),
        ("row_drop", "model_rows:training_set"),
    }
    message = alerts[("row_drop", "rows_loaded:all")].message
    assert message.startswith("rows loaded from all sources: 700 rows, -29% against the average 992")
    assert "of the previous 5 runs (alert below -20%)" in message  # the initial load is not in the baseline


def test_no_baseline_no_row_alert(log_db: duckdb.DuckDBPyConnection) -> None:
    history(log_db, past_run(30, rows=100_000), past_run(20))
    assert firing(log_db, past_run(1, rows=10)) == {}  # one ordinary run is not a trailing average


def test_a_stage_over_twice_its_usual_time_alerts(log_db: duckdb.DuckDBPyConnection) -> None:
    history(log_db, *(past_run(50 - i, build_seconds=20 + i) for i in range(4)))
    assert ("slow_stage", "stage:build") not in firing(log_db, past_run(2, build_seconds=35))
    alerts = firing(log_db, past_run(1, build_seconds=50))
    assert set(alerts) == {("slow_stage", "stage:build")}
    assert "stage build took 50.0 s, 2.3x its usual 22.0 s" in alerts[("slow_stage", "stage:build")].message


def test_an_error_rate_over_1_percent_alerts_and_resolves(log_db: duckdb.DuckDBPyConnection) -> None:
    history(log_db, past_run(30, status="failed"), past_run(20))
    quiet = past_run(1)
    assert ("error_rate", "runs") not in firing(log_db, quiet)  # the failure is older than 24 h
    failed = past_run(0.5, status="failed")
    alerts = firing(log_db, failed)
    assert alerts[("error_rate", "runs")].message.startswith("1 of the 3 runs of the last 24 h failed (33%")
    open_now, _ = record(log_db, failed, evaluate(log_db, failed, NOW), NOW)
    assert [alert.key for alert in open_now] == [("error_rate", "runs")]


def test_an_alert_stays_open_until_a_run_checks_it_and_it_no_longer_fires(log_db: duckdb.DuckDBPyConnection) -> None:
    steady(log_db)
    drop = past_run(3, rows=500)
    insert_run(log_db, drop)
    open_now, _ = record(log_db, drop, evaluate(log_db, drop, NOW), NOW)
    assert ("row_drop", "rows_loaded:all") in {alert.key for alert in open_now}
    skipped = past_run(2, status="skipped")
    skipped.stages, skipped.source_rows, skipped.model_rows = [], [], []
    insert_run(log_db, skipped)
    open_now, resolved = record(log_db, skipped, evaluate(log_db, skipped, NOW), NOW)
    assert resolved == [] and ("row_drop", "rows_loaded:all") in {alert.key for alert in open_now}
    recovered = past_run(1, rows=1050)
    insert_run(log_db, recovered)
    open_now, resolved = record(log_db, recovered, evaluate(log_db, recovered, NOW), NOW)
    assert ("row_drop", "rows_loaded:all") in {alert.key for alert in resolved}
    assert open_alerts(log_db) == open_now == []
    [(status, opened_by, resolved_by)] = log_db.execute(
        "select status, opened_by_run, resolved_by_run from monitoring.alerts where subject = 'rows_loaded:all'"
    ).fetchall()
    assert (status, opened_by, resolved_by) == ("resolved", drop.run_id, recovered.run_id)


def test_strict_turns_open_alerts_into_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        ensure_schema(connection)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        failed = past_run(0, status="failed")
        failed.started_at = failed.ended_at = now - dt.timedelta(hours=1)
        insert_run(connection, failed)
    skip = ["--skip-extract", "--skip-build", "--skip-export", "--skip-train"]
    outputs = {}
    for args, expected in ((["run", *skip], 0), (["run", *skip, "--strict"], 3), (["status", "--strict"], 3)):
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            assert main(args) == expected, output.getvalue()
        outputs[" ".join(args[:1] + args[-1:])] = output.getvalue()
    assert all("ALERT [error_rate] 1 of the " in output for output in outputs.values())
    assert "--strict: 1 open alert(s): exit 3" in outputs["run --strict"]
    assert "open alerts: 1" in outputs["status --strict"]
    metrics = (tmp_path / "metrics" / "pipeline.prom").read_text()
    assert 'ml_features_alerts_open{rule="error_rate"} 1' in metrics and "ml_features_run_failures_total 1" in metrics


def test_a_warned_test_alerts_until_a_build_runs_it_and_it_passes(log_db: duckdb.DuckDBPyConnection) -> None:
    def with_test(run: RunRecord, status: str, failures: int) -> RunRecord:
        run.node_results = [
            {
                "invocation_id": "i",
                "unique_id": "test.ml_features.null_rate_below_x.abc",
                "resource_type": "test",
                "status": status,
                "seconds": 0.1,
                "failures": failures,
                "message": "",
                "relation_name": None,
            }
        ]
        return run

    warned = with_test(past_run(2), "warn", 12)
    insert_run(log_db, warned)
    opened, _ = record(log_db, warned, evaluate(log_db, warned, NOW), NOW)
    [alert] = [alert for alert in opened if alert.rule == "warned_test"]
    assert alert.subject == "test:null_rate_below_x" and alert.value == 12
    assert alert.line().startswith("ALERT [warned_test] dbt test null_rate_below_x warned: 12 failing rows")
    # a build that does not run the test leaves it open; one where it passes resolves it
    other = past_run(1.5)
    insert_run(log_db, other)
    still, _ = record(log_db, other, evaluate(log_db, other, NOW), NOW)
    assert any(alert.rule == "warned_test" for alert in still)
    passed = with_test(past_run(1), "pass", 0)
    insert_run(log_db, passed)
    after, resolved = record(log_db, passed, evaluate(log_db, passed, NOW), NOW)
    assert [alert.subject for alert in resolved] == ["test:null_rate_below_x"]
    assert not any(alert.rule == "warned_test" for alert in after)
