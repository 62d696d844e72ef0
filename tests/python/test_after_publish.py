"""The tests of the views consumers read over the published gold (tag `after_publish`: the realtime
view's key test, and any a user tags so) run in a second dbt invocation right after the publish: they
check what is served now. One that fails fails the run, loudly, naming it; the gold it read, whose own
tests passed, stays published."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
from conftest import MOVED_TRANSACTION, REPO_ROOT, RUN_DATE, Warehouse, new_app_load

# a test a user adds over the realtime view and tags after_publish; it keeps every speed-layer row,
# so it fails whenever the view serves one (a run's last day always has some)
USER_TEST = """
{{ config(tags=['after_publish']) }}
select transaction_id from {{ ref('realtime_transaction_features') }} where served_from = 'speed'
"""


def run_pipeline(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline run` for RUN_DATE with `args`, from the project in `project` (its own code)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--date", RUN_DATE, *args],
        cwd=project,
        env=os.environ | {"PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def project_copy(destination: Path) -> Path:
    """The repository's tracked files (code and dbt project) in `destination`."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def test_a_failing_after_publish_test_fails_the_run_after_the_publish(
    warehouse_copy: Warehouse, tmp_path: Path
) -> None:
    project = project_copy(tmp_path / "project")
    (project / "tests" / "singular" / "assert_user_speed_layer_is_empty.sql").write_text(USER_TEST)
    completed = run_pipeline(project, "--skip-extract", "--skip-export", "--skip-train")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "[build] dbt test --selector after_publish" in output, output
    assert "validation failed: 1 dbt test(s) and 0 other node(s) failed; gold was published (its own tests passed)" in (
        output
    )
    assert "assert_user_speed_layer_is_empty" in output
    assert "Stack Trace" not in output and "Traceback" not in output  # Dagster's own log went to the run's log file
    assert "[train]" not in output  # nothing after the failed step ran

    # the build, then the after-publish tests, each its own dbt invocation of the run
    documents = [
        json.loads(path.read_text()) for path in (warehouse_copy.data_dir / "target").glob("*/run_results.json")
    ]
    runs = sorted(
        (doc for doc in documents if doc["args"]["which"] in ("build", "test")),
        key=lambda doc: doc["metadata"]["generated_at"],
    )
    build, tests = runs[-2:]
    assert (build["args"]["which"], tests["args"]["which"]) == ("build", "test")
    built = {result["unique_id"].split(".")[2] for result in build["results"]}
    assert "assert_realtime_serves_each_transaction_once" not in built and "fct_transaction_features" in built
    tested = {
        result["unique_id"].split(".")[2]: result["status"]
        for result in tests["results"]
        if result["unique_id"].startswith("test.")
    }
    assert tested == {
        "assert_realtime_serves_each_transaction_once": "pass",
        "assert_user_speed_layer_is_empty": "fail",
    }

    # gold published by the build, before the tests over it started
    invocation = build["metadata"]["invocation_id"]
    [(status, published_at)] = warehouse_copy.query(
        f"select status, logged_at from monitoring.publish_log where invocation_id = '{invocation}'"
    )
    assert status == "published"
    [(latest,)] = warehouse_copy.query("select status from monitoring.publish_log order by logged_at desc limit 1")
    assert latest == "published"  # the tests' invocation recorded no decision: it builds nothing
    started = min(timing["started_at"] for result in tests["results"] for timing in result["timing"])
    assert published_at < dt.datetime.fromisoformat(started).replace(tzinfo=None)  # both UTC


def test_a_transaction_moved_into_the_speed_layer_is_published_and_served_once(warehouse_copy: Warehouse) -> None:
    """A late update moves a transaction the published batch serves to the last built day, which the
    speed layer serves: until the next build the view serves it twice (test_primary_keys). Tested
    before the publish, over the old batch, the next build's realtime test failed the same way, so
    that build, and every later one, published nothing; tested after, the build publishes the
    rebuilt days and the view serves the transaction once."""
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        [(moved,)] = connection.execute(
            "select transaction_id from marts.realtime_transaction_features "
            "where served_from = 'batch' order by transaction_date desc limit 1"
        ).fetchall()
        assert connection.execute(MOVED_TRANSACTION, {"load_id": new_app_load(connection)}).fetchall() == [(1,)]
    completed = run_pipeline(REPO_ROOT, "--skip-extract", "--skip-export", "--skip-train")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "[build] dbt test --selector after_publish" in output
    [(status,)] = warehouse_copy.query("select status from monitoring.publish_log order by logged_at desc limit 1")
    assert status == "published"
    served = warehouse_copy.query(
        "select served_from, transaction_date from marts.realtime_transaction_features "
        f"where transaction_id = '{moved}'"
    )
    [(last_day,)] = warehouse_copy.query("select max(transaction_date) from marts.fct_transaction_windows")
    assert served == [("speed", last_day)]  # once, on the day it moved to
    [(published,)] = warehouse_copy.query(
        f"select count(*) from marts.fct_transaction_features where transaction_id = '{moved}'"
    )
    assert published == 1  # the published batch holds its new version only


def test_a_dbt_error_before_any_node_fails_the_run_at_once_with_dbts_own_message(
    warehouse_copy: Warehouse, tmp_path: Path
) -> None:
    """dbt stopping on its own before it ran a node (here a selector the project no longer has: a user
    renamed it) writes no run_results.json, like a killed dbt; it is not transient, so the step fails
    once, with dbt's message, instead of rebuilding the day three more times and saying "killed"."""
    project = project_copy(tmp_path / "project")
    selectors = project / "selectors.yml"
    selectors.write_text(selectors.read_text().replace("name: after_publish", "name: views_after_publish"))
    completed = run_pipeline(project, "--skip-extract", "--skip-export", "--skip-train")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "dbt test stopped before running any node (exit code 2)" in output, output
    assert "Could not find selector named after_publish, expected one of ['views_after_publish']" in output
    assert "killed" not in output
    assert "Stack Trace" not in output and "Traceback" not in output  # Dagster's own log went to the run's log file
    assert output.count("[build] dbt build") == 1, output  # one attempt: the step was not retried
    assert "[train]" not in output
