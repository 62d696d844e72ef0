"""Alerts from what Dagster records, through real `pipeline run`s on a demo data set: a source that
delivers far fewer rows (the row-drop asset check warns, and clears when it delivers again), a step
slowed by a warehouse lock (retried, over twice its usual time), a failed run (error rate over 1%);
`pipeline status --strict`, the report and the metrics read it all from the Dagster instance."""

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEST_SCALE, TEST_SEED, demo_environment
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    build_run_status_sensor_context,
)

from demo.generate import generate
from orchestration.instance import get_instance
from orchestration.monitoring import (
    ALERT_TAG,
    ALERTS_TAG,
    GOLD_ROWS_CHECK,
    ROWS_LOADED_CHECK,
    after_run,
    alerts_after_failure,
    open_alerts,
    utc_now,
)
from orchestration.run import RunOptions, run_day
from pipeline.reporting.alerts import DEFAULT_LIMITS, error_rate, row_drop, slow_step
from pipeline.reporting.status import show_status

DAY = dt.date(2026, 11, 30)
CHARGEBACKS = AssetKey(["chargebacks", "chargebacks"])
HOLD_LOCK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    generate(data / "demo", seed=TEST_SEED, scale=TEST_SCALE)
    # most ages missing: two dbt tests of severity warn find rows (the run succeeds)
    with contextlib.closing(sqlite3.connect(data / "demo" / "app.sqlite")) as app, app:
        app.execute("update users set age = null where user_id % 10 < 6")
    for key, value in demo_environment(data).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return data


def deliver_chargebacks(data: Path, day: int, rows: int) -> None:
    """A new weekly chargebacks file in the bucket, with `rows` reports."""
    folder = data / "demo" / "bucket" / "chargebacks" / f"reported_date=2026-11-{day:02d}"
    folder.mkdir(parents=True)
    lines = "".join(f"{9_000_000 + day * 1000 + i},2026-11-{day:02d} 10:00:00,fraud\n" for i in range(rows))
    (folder / "chargebacks.csv").write_text("transaction_id,reported_at,reason\n" + lines)


def pipeline_run(build: bool = False, sources: tuple[str, ...] | None = ("chargebacks",)) -> tuple[int, str]:
    """`pipeline run` for DAY, then what follows a run; (exit code, run id)."""
    code = run_day(RunOptions(day=DAY, sources=sources, skip_build=not build, skip_export=True, skip_train=True))
    instance = get_instance()
    run_id = instance.get_run_records(limit=1)[0].dagster_run.run_id
    return code, run_id


def alerts_now() -> dict[tuple[str, str], str]:
    return {alert.key: alert.line() for alert in open_alerts(get_instance())}


def test_alerts_fire_in_dagster_and_clear(data_dir: Path) -> None:
    # the first run loads every source and builds: the gold row counts are checked (no baseline yet)
    code, first = pipeline_run(build=True, sources=None)
    assert code == 0
    instance = get_instance()
    gold = {
        entry.dagster_event.asset_check_evaluation_data.asset_key.path[-1]: entry.dagster_event
        for entry in instance.all_logs(first, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if entry.dagster_event.asset_check_evaluation_data.check_name == GOLD_ROWS_CHECK
    }
    training = gold["training_set"].asset_check_evaluation_data
    assert training.passed and training.metadata["rows"].value > 0
    assert training.description.startswith("no baseline yet")
    warned = [line for key, line in alerts_now().items() if key[0] == "warned_test"]
    assert len(warned) == 2 and all("null_rate_below_int_users_cleaned_age" in line for line in warned)
    assert "failing row" in warned[0]

    # three weeks of ordinary chargeback deliveries: the baseline (the initial load is not in it)
    for day, rows in ((2, 100), (9, 110), (16, 90)):
        deliver_chargebacks(data_dir, day, rows)
        assert pipeline_run()[0] == 0
    assert not [key for key in alerts_now() if key[0] == "row_drop"]

    # far fewer rows: the check on the raw table warns (the run still succeeds)
    deliver_chargebacks(data_dir, 23, 40)
    code, dropped = pipeline_run()
    assert code == 0
    check = AssetCheckKey(CHARGEBACKS, ROWS_LOADED_CHECK)
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
    evaluation = latest.event.dagster_event.asset_check_evaluation_data
    assert latest.run_id == dropped and not evaluation.passed and evaluation.severity == AssetCheckSeverity.WARN
    subject = ("row_drop", f"{ROWS_LOADED_CHECK}:chargebacks/chargebacks")
    assert alerts_now()[subject].startswith(
        "ALERT [row_drop] rows loaded into chargebacks.chargebacks: 40 rows, -60% against the average 100 "
        "of the previous 3 (alert below -20%)"
    )

    # a run whose extract waits out a warehouse lock (Dagster retries it after 5 s, then 10 s more)
    # takes over twice its usual time; it brings no new rows, so the row check is skipped and its
    # alert stays open. The `pipeline` command in its own process: the retry waits are its settings.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data_dir / "warehouse.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    command = [sys.executable, "-m", "pipeline.cli", "run", "--date", DAY.isoformat(), "--sources", "chargebacks"]
    settings = {"ML_FEATURES_RETRIES": "3", "ML_FEATURES_RETRY_WAIT": "5", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "--skip-build", "--skip-export", "--skip-train"],
        env=os.environ | settings,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = []
        for line in process.stdout:
            output.append(line)
            if line.startswith("[extract] chargebacks started") and holder.poll() is None:
                time.sleep(8)  # past the first retry (5 s after the first attempt): the second one gets in
                holder.communicate("release\n")
        process.wait()
    finally:
        holder.kill()
        process.kill()
    assert process.returncode == 0, "".join(output)
    slow = instance.get_run_records(limit=1)[0].dagster_run.run_id
    [extract] = [step for step in instance.get_run_step_stats(slow) if step.step_key == "extract_chargebacks"]
    assert extract.attempts >= 2  # retried while the lock was held
    alerts = alerts_now()
    assert alerts[("slow_step", "extract_chargebacks")].startswith("ALERT [slow_step] step extract_chargebacks took ")
    assert subject in alerts
    tags = instance.get_run_by_id(slow).tags
    assert tags[ALERTS_TAG] == "slow_step" and f"{ALERT_TAG}slow_step.extract_chargebacks" in tags

    # an ordinary delivery and duration again: both alerts are resolved
    deliver_chargebacks(data_dir, 30, 95)
    code, recovered = pipeline_run()
    assert code == 0
    assert not [key for key in alerts_now() if key[0] in ("row_drop", "slow_step")]
    assert instance.get_run_by_id(recovered).tags[ALERTS_TAG] == "none"

    # a failed run (the bucket is gone): 1 of 8 runs of the last 24 h failed
    bucket = data_dir / "demo" / "bucket"
    shutil.move(bucket, data_dir / "bucket-away")
    code, failed = pipeline_run()
    assert code == 1
    alerts = alerts_now()
    assert alerts[("error_rate", "runs")].startswith("ALERT [error_rate] 1 of the 8 runs of the last 24 h failed (12%")
    assert instance.get_run_by_id(failed).tags[ALERTS_TAG] == "error_rate"
    # under the daemon, the run failure sensor does the same after a failed run
    [failure] = instance.all_logs(failed, of_type=DagsterEventType.RUN_FAILURE)
    sensor_context = build_run_status_sensor_context(
        "alerts_after_failure", failure.dagster_event, instance, instance.get_run_by_id(failed)
    )
    assert "ALERT [error_rate] 1 of the 8 runs" in alerts_after_failure(sensor_context.for_run_failure()).skip_message
    later = utc_now() + dt.timedelta(hours=25)
    assert not [alert for alert in open_alerts(instance, later) if alert.rule == "error_rate"]

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert show_status(runs=10, strict=True) == 3
        assert show_status(runs=10) == 0
    text = output.getvalue()
    assert f"{failed[:8]}  daily" in text and "failure" in text and "demo data" in text
    assert "open alerts: 3" in text and "ALERT [error_rate] 1 of the 8 runs" in text  # and the 2 warned tests

    # the report and the metrics, from the same records
    html = (data_dir / "reports" / "index.html").read_text()
    assert "ALERT [error_rate] 1 of the 8 runs" in html and failed[:8] in html and dropped[:8] in html
    [invocation] = [  # the first run's dbt build (the tests after its publish are another invocation)
        document
        for path in (data_dir / "target").glob(f"dbt_models-{first[:7]}-*/run_results.json")
        if (document := json.loads(path.read_text()))["args"]["which"] == "build"
    ]
    assert invocation["metadata"]["invocation_id"] in html  # the load lineage: first run's loads -> its dbt build
    assert "<script" not in html and "src=" not in html  # one self-contained page
    metrics = (data_dir / "metrics" / "pipeline.prom").read_text()
    for line in (
        'ml_features_alerts_open{rule="error_rate"} 1',
        'ml_features_alerts_open{rule="row_drop"} 0',
        'ml_features_alerts_open{rule="warned_test"} 2',
        "ml_features_run_failures_total 1",
        'ml_features_runs_total{status="success"} 7',
        "ml_features_last_run_success 0",
        f'ml_features_gold_rows{{table="training_set"}} {training.metadata["rows"].value}',
    ):
        assert line in metrics, line

    # a report that cannot be written is one line; the metrics and the run stand
    shutil.rmtree(data_dir / "reports")
    (data_dir / "reports").write_text("a file where the report folder goes")
    (data_dir / "metrics" / "pipeline.prom").unlink()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert len(after_run(instance, failed)) == 3
    assert "[monitoring] metrics or report not written: " in output.getvalue()
    assert "ml_features_last_run_success 0" in (data_dir / "metrics" / "pipeline.prom").read_text()


def test_rules_at_their_thresholds() -> None:
    history = [100.0, 110.0, 90.0, 100.0]
    assert row_drop("s", "rows", 81, history, DEFAULT_LIMITS) is None  # -19%
    assert row_drop("s", "rows", 79, history, DEFAULT_LIMITS).message.startswith("rows: 79 rows, -21% against")
    assert row_drop("s", "rows", 1, history[:2], DEFAULT_LIMITS) is None  # two loads are no trailing average
    assert row_drop("s", "rows", 10, [100.0] * 7 + [1e9], DEFAULT_LIMITS).baseline == 100  # the last 7 only
    assert slow_step("dbt_models", 41, [20.0, 21.0, 19.0], DEFAULT_LIMITS).baseline == 20  # 2.05x the median
    assert slow_step("dbt_models", 39, [20.0, 21.0, 19.0], DEFAULT_LIMITS) is None  # 1.95x
    assert slow_step("extract_fx", 4.5, [1.0, 1.0, 1.0], DEFAULT_LIMITS) is None  # 4.5x, but 3.5 s longer
    assert error_rate(0, 50, DEFAULT_LIMITS) is None and error_rate(1, 100, DEFAULT_LIMITS) is None  # 1% is not over
    assert error_rate(1, 99, DEFAULT_LIMITS).message.startswith("1 of the 99 runs of the last 24 h failed (1%")
