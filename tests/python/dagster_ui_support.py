"""The Dagster UI's GraphQL API for the tests that start `orchestration/serve.py` (the webserver and the
daemon): a query, and stopping the daily schedule and the bucket sensor, which run by default and
would start runs of their own in the middle of a test."""

import json
import urllib.request

from orchestration import serve

LOCATION = "orchestration.definitions"
REPOSITORY = "__repository__"
SCHEDULE = "daily_at_0200_utc"
SENSOR = "new_bucket_files"


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{serve.url(port)}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"]


def stop_bucket_sensor(port: int) -> None:
    """The bucket sensor asks for a run of today as soon as it sees a bucket file it has not seen
    (with demo data: every file, at once)."""
    selector = {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION, "sensorName": SENSOR}
    state = graphql(
        port,
        "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { sensorState { id } } } }",
        {"s": selector},
    )["sensorOrError"]["sensorState"]
    stopped = graphql(
        port,
        "mutation($id: String) { stopSensor(id: $id) { "
        "... on StopSensorMutationResult { instigationState { status } } } }",
        {"id": state["id"]},
    )["stopSensor"]
    assert stopped == {"instigationState": {"status": "STOPPED"}}, stopped


def stop_daily_schedule(port: int) -> None:
    """The daily schedule starts a run of yesterday at 02:00 UTC, in the middle of a test that crosses
    that hour (it did in CI: a fourth day in the middle of a backfill)."""
    selector = {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION, "scheduleName": SCHEDULE}
    state = graphql(
        port,
        "query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { "
        "... on Schedule { scheduleState { id } } } }",
        {"s": selector},
    )["scheduleOrError"]["scheduleState"]
    stopped = graphql(
        port,
        "mutation($id: String) { stopRunningSchedule(id: $id) { "
        "... on ScheduleStateResult { scheduleState { status } } } }",
        {"id": state["id"]},
    )["stopRunningSchedule"]
    assert stopped == {"scheduleState": {"status": "STOPPED"}}, stopped
