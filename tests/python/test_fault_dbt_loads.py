"""A build between a killed app load and its resume never publishes short gold (issue 21, defect 4).

dlt's delete-insert merge of a table commits (the delete of the replaced rows and the insert of the
new versions, one transaction) before dlt records the load in `_dlt_loads`, at the end of the
package. Staging reads only completed loads, so after a kill in between it would see neither version
of the replaced users. The real `python -m extract --sources app` runs in a subprocess that SIGKILLs
itself right after the users merge committed; `dbt build` then stops with an error naming the load
and how to finish it, publishes nothing, and once extract finished the load the build publishes the
same gold as a build after an uninterrupted load.
"""

import shutil
from datetime import date
from pathlib import Path

import pytest
from conftest import TEST_SCALE, TEST_SEED, table_hash
from extract_support import JOB_COMMITTED, Milestone, Workspace, start_cli_at, use, workspace

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import run_dbt

BUILD = ["build", "--exclude-resource-type", "unit_test"]
GOLD = ("fct_transaction_features", "training_set", "user_daily_features", "dataset_splits")
FIRST_DAY, NEXT_DAY = date(2026, 4, 1), date(2026, 4, 20)


def gold_hashes(space: Workspace, schema: str = "marts") -> dict[str, tuple[int, str]]:
    """Row count and order-independent hash of each gold table, without the dlt load ids (which name
    the load, not the data: two workspaces load the same rows under different ids)."""
    return {
        table: table_hash(space.duckdb_path, f"{schema}.{table}", lambda column: column.endswith("load_id"))
        for table in GOLD
    }


def build(next_day: date) -> None:
    result = run_dbt(BUILD, dbt_vars={"run_date": next_day.isoformat()}, quiet=True)
    assert result.success, result.failures


def test_a_build_after_a_kill_between_the_users_merge_and_the_load_record_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch, "killed")
    generate(space.demo_dir, seed=TEST_SEED, scale=TEST_SCALE, as_of=FIRST_DAY)
    for source in SOURCES:
        load_source(source)
    build(FIRST_DAY)
    published_before = gold_hashes(space)
    generate(space.demo_dir, seed=TEST_SEED, scale=TEST_SCALE, as_of=NEXT_DAY)  # users change, new transactions
    uninterrupted = Workspace(tmp_path / "uninterrupted")
    shutil.copytree(space.data_dir, uninterrupted.data_dir)

    # the users job loads the staging dataset, then its merge job (users.*.sql) replaces the rows
    killed = start_cli_at(space, "app", Milestone(JOB_COMMITTED, 2, " users."))
    killed.communicate(timeout=300)
    assert killed.returncode == -9
    [(pending_load, replaced_users)] = space.query(
        "select _dlt_load_id, count(*) from raw_app.users "
        "where _dlt_load_id not in (select load_id from raw_app._dlt_loads) group by 1"
    )
    assert replaced_users > 0  # the merge committed: the old versions are gone, the new ones unrecorded

    refused = run_dbt(BUILD, dbt_vars={"run_date": NEXT_DAY.isoformat()}, quiet=True)
    assert not refused.success
    # the refusal names the load and how to finish it (not some downstream test that happens to trip)
    named = [failure for failure in refused.failures if "loads_completed_app_users" in failure]
    assert len(named) == 1, refused.failures
    [failure] = named
    assert pending_load in failure and "python -m extract --sources app" in failure
    assert gold_hashes(space) == published_before
    [(status, reason)] = space.query(
        "select status, reason from monitoring.publish_log order by logged_at desc limit 1"
    )
    assert status == "not_published" and "loads_completed_app_users" in reason

    assert load_source("app").resumed == [pending_load]
    build(NEXT_DAY)
    after_resume = gold_hashes(space)
    assert after_resume != published_before

    use(uninterrupted, monkeypatch)
    load_source("app")
    build(NEXT_DAY)
    assert gold_hashes(uninterrupted) == after_resume
