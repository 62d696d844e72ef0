"""The schedule and the sensor that start the daily job, evaluated through Dagster's own contexts
on real files: the schedule asks at 02:00 UTC for the day before; the sensor asks for a run of
today when a file lands in a bucket source (once per delivery), and for nothing otherwise."""

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import TEST_SEED, demo_environment
from dagster import DagsterInstance, RunRequest, SkipReason, build_schedule_context, build_sensor_context

from demo.generate import generate
from orchestration.definitions import daily_job, defs


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in demo_environment(tmp_path).items():
        monkeypatch.setenv(key, value)
    generate(tmp_path / "demo", seed=TEST_SEED, scale=300)
    return tmp_path / "demo"


def test_the_schedule_runs_the_day_before_at_0200_utc() -> None:
    schedule = defs.get_schedule_def("daily_at_0200_utc")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == daily_job.name
    context = build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 3, 5, 2, 0, tzinfo=dt.UTC), repository_def=defs.get_repository_def()
    )
    [request] = schedule.evaluate_tick(context).run_requests or []
    assert request.partition_key == "2026-03-04"


def test_the_sensor_asks_for_a_run_when_files_land(demo: Path) -> None:
    sensor = defs.get_sensor_def("new_bucket_files")
    with DagsterInstance.ephemeral() as instance:
        first = sensor.evaluate_tick(build_sensor_context(repository_def=defs.get_repository_def(), instance=instance))
        [request] = first.run_requests or []
        assert isinstance(request, RunRequest)
        assert request.partition_key == dt.datetime.now(dt.UTC).date().isoformat()
        events = len(list((demo / "events").rglob("*.parquet")))
        chargebacks = len([path for path in (demo / "bucket" / "chargebacks").rglob("*") if path.is_file()])
        assert request.tags["ml_features/new_files"] == f"events {events}, chargebacks {chargebacks}"

        # nothing new: no run
        again = sensor.evaluate_tick(
            build_sensor_context(repository_def=defs.get_repository_def(), instance=instance, cursor=first.cursor)
        )
        assert not again.run_requests and isinstance(again.skip_message, str) and "no new files" in again.skip_message

        # one new micro-batch file: one run, for that delivery only
        batch = next((demo / "events").rglob("*.parquet"))
        landed = demo / "events" / "date=2099-01-01" / batch.name
        landed.parent.mkdir()
        shutil.copyfile(batch, landed)
        later = time.time() + 5
        os.utime(landed, (later, later))
        new = sensor.evaluate_tick(
            build_sensor_context(
                repository_def=defs.get_repository_def(), instance=instance, cursor=again.cursor or first.cursor
            )
        )
        [request] = new.run_requests or []
        assert request.tags["ml_features/new_files"] == "events 1"
        assert request.run_key != first.run_requests[0].run_key


def test_the_sensor_skips_when_no_bucket_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(tmp_path).items():  # no demo data generated, no bucket set
        monkeypatch.setenv(key, value)
    sensor = defs.get_sensor_def("new_bucket_files")
    with DagsterInstance.ephemeral() as instance:
        result = sensor.evaluate_tick(build_sensor_context(repository_def=defs.get_repository_def(), instance=instance))
    assert not result.run_requests and "no new files" in (result.skip_message or "")
    assert not isinstance(result, SkipReason)
