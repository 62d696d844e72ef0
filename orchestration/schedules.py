"""The daily schedule: at 02:00 UTC, the day before (its data is complete by then). Running when
`make dagster` starts (schedules otherwise start stopped)."""

import datetime as dt

from dagster import DefaultScheduleStatus, JobDefinition, RunRequest, ScheduleEvaluationContext, schedule
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def daily_schedule(job: JobDefinition | UnresolvedAssetJobDefinition):  # noqa: ANN201 (a ScheduleDefinition)
    @schedule(
        name="daily_at_0200_utc",
        job=job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
    )
    def daily_at_0200_utc(context: ScheduleEvaluationContext) -> RunRequest:
        day = (context.scheduled_execution_time.astimezone(dt.UTC) - dt.timedelta(days=1)).date()
        return RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())

    return daily_at_0200_utc
