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


def land(demo: Path, folder: str, count: int) -> None:
    """`count` new event micro-batch files in a new `date=` folder, modified after everything there."""
    batches = sorted((demo / "events").rglob("*.parquet"))[:count]
    (demo / "events" / folder).mkdir()
    later = time.time() + 5
    for number, batch in enumerate(batches):
        landed = demo / "events" / folder / f"{number}-{batch.name}"
        shutil.copyfile(batch, landed)
        os.utime(landed, (later, later))


def test_the_sensor_asks_for_a_run_when_files_land(demo: Path) -> None:
    sensor = defs.get_sensor_def("new_bucket_files")
    repository = defs.get_repository_def()
    with DagsterInstance.ephemeral() as instance:
        # the first look records what is there: no run for files that were already there
        first = sensor.evaluate_tick(build_sensor_context(repository_def=repository, instance=instance))
        events = len(list((demo / "events").rglob("*.parquet")))
        chargebacks = len([path for path in (demo / "bucket" / "chargebacks").rglob("*") if path.is_file()])
        assert not first.run_requests and f"watching {events + chargebacks} files" in (first.skip_message or "")

        # nothing new: no run
        again = sensor.evaluate_tick(
            build_sensor_context(repository_def=repository, instance=instance, cursor=first.cursor)
        )
        assert not again.run_requests and "no new files" in (again.skip_message or "")

        # two new micro-batch files: one run of today, for that delivery
        land(demo, "date=2099-01-01", 2)
        new = sensor.evaluate_tick(
            build_sensor_context(repository_def=repository, instance=instance, cursor=first.cursor)
        )
        [request] = new.run_requests or []
        assert isinstance(request, RunRequest)
        assert request.partition_key == dt.datetime.now(dt.UTC).date().isoformat()
        assert request.tags["ml_features/new_files"] == "events 2"

        # the next delivery: another run, with another run key
        land(demo, "date=2099-01-02", 1)
        time.sleep(0.01)
        latest = sensor.evaluate_tick(
            build_sensor_context(repository_def=repository, instance=instance, cursor=new.cursor)
        )
        [next_request] = latest.run_requests or []
        assert next_request.tags["ml_features/new_files"] == "events 1" and next_request.run_key != request.run_key


def test_the_sensor_skips_when_no_bucket_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_environment(tmp_path).items():  # no demo data generated, no bucket set
        monkeypatch.setenv(key, value)
    sensor = defs.get_sensor_def("new_bucket_files")
    with DagsterInstance.ephemeral() as instance:
        first = sensor.evaluate_tick(build_sensor_context(repository_def=defs.get_repository_def(), instance=instance))
        result = sensor.evaluate_tick(
            build_sensor_context(repository_def=defs.get_repository_def(), instance=instance, cursor=first.cursor)
        )
    assert not result.run_requests and "no new files" in (result.skip_message or "")
    assert not isinstance(result, SkipReason)
