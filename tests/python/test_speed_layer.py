"""The speed layer of realtime_transaction_features decides again only what an incremental run of the
cleaning tables would (rows loaded since the last build), yet serves exactly what the former view
served, which deduplicated, validated and cleaned every staged row at query time: compared right after
a build and after new loads without a build (a new day's extract, a new version of a transaction, a
record pushed to the stream, a quarantined transaction whose user has arrived since)."""

import datetime as dt
import json
import subprocess
from pathlib import Path

import duckdb
import pytest
from conftest import TEST_SCALE, TEST_SEED, demo_environment, new_app_load

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.warehouse.dbt_runner import PROJECT_DIR, dbt_command, dbt_environment, run_dbt

BUILT_DAY = dt.date(2026, 3, 1)
RUN_SETTINGS = {"run_date": BUILT_DAY.isoformat()}
VIEW = "marts.realtime_transaction_features"

# the reference: the view as it was before (models/marts/realtime/realtime_transaction_features.sql
# up to 7c03d8b), which decided every staged transaction and event at query time
FORMER_VIEW = """
with
batch as (
    select * from {{ published(ref('fct_transaction_features')) }}
),
batch_cutoff as (
    select coalesce(max(transaction_date), cast('1970-01-01' as date)) as speed_from_date
    from batch
),
staged_transactions as (
    {{ deduplicate_transactions([ref('stg_app__transactions'), ref('stg_stream__transactions')]) }}
),
validated_transactions as (
    {{ validate_transactions(
        'staged_transactions', users=ref('stg_app__users'), currencies=ref('currencies'),
        rates=ref('int_fx_rates_ranged')
    ) }}
),
transactions as (
    {{ clean_transactions('validated_transactions') }}
),
staged_events as (
    {{ deduplicate_events([ref('stg_events__events'), ref('stg_stream__events')]) }}
),
events as (
    select * from ({{ validate_events('staged_events', users=ref('stg_app__users')) }}) as validated_events
    where rejection_rule is null
),
recent_windowed as (
    {{ point_in_time_windows(
        'transactions', 'events',
        "(select " ~ dbt.dateadd('day', -31, 'speed_from_date') ~ " from batch_cutoff)"
    ) }}
),
speed_windowed as (
    select recent_windowed.*
    from recent_windowed
    cross join batch_cutoff
    where recent_windowed.transaction_date >= batch_cutoff.speed_from_date
),
speed as (
    {{ transaction_features('speed_windowed', {
        'parameters': published(ref('preprocessing_parameters')),
        'users': ref('online_users'),
        'tiers': ref('online_user_tiers'),
        'labels': ref('transaction_labels'),
        'run_date_end': run_date_end(),
    }) }}
),
batch_before_cutoff as (
    select batch.*
    from batch
    cross join batch_cutoff
    where batch.transaction_date < batch_cutoff.speed_from_date
),
combined as (
    select *, 'batch' as served_from from batch_before_cutoff
    union all
    select *, 'speed' as served_from from speed
)
select * from combined
"""

# a new version of a transaction the speed layer serves: twice the amount, updated now
NEW_VERSION = """
insert into raw_app.transactions
select * replace (
    cast(cast(amount as double) * 2 as varchar) as amount,
    strftime(now(), '%Y-%m-%d %H:%M:%S') as updated_at,
    $load_id as _dlt_load_id,
    'new-version-' || _dlt_id as _dlt_id
)
from raw_app.transactions
where transaction_id = $transaction_id
order by updated_at desc
limit 1
"""
# a transaction of the built day by a user the app has not sent yet (quarantined by the build)
ORPHAN = """
insert into raw_app.transactions
select * replace (
    $transaction_id as transaction_id, $user_id as user_id, $load_id as _dlt_load_id, 'orphan-' || _dlt_id as _dlt_id
)
from raw_app.transactions
where created_at like $day || '%'
order by transaction_id
limit 1
"""
# the user of the quarantined transaction arrives: a copy of another user's row under its id
USER_ARRIVES = """
insert into raw_app.users
select * replace ($user_id as user_id, $load_id as _dlt_load_id, 'arrived-' || _dlt_id as _dlt_id)
from raw_app.users
order by user_id
limit 1
"""


def compiled_former_view() -> str:
    """The former view's SQL, compiled against today's macros (dbt compile --inline)."""
    command = dbt_command(["compile", "--quiet", "--output", "json", "--inline", FORMER_VIEW], None, RUN_SETTINGS)
    completed = subprocess.run(
        command, cwd=PROJECT_DIR, env=dbt_environment(RUN_SETTINGS), capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout[completed.stdout.index("{") :])["compiled"]


def rows_hash(connection: duckdb.DuckDBPyConnection, relation: str) -> tuple[int, str]:
    """Row count and a hash of every column of every row, ordered by transaction_id."""
    [(rows, digest)] = connection.sql(
        "select count(*), md5(coalesce(string_agg(md5(cast(r as varchar)), ',' order by r.transaction_id), '')) "
        f"from ({relation}) as r"
    ).fetchall()
    return rows, digest


def served(connection: duckdb.DuckDBPyConnection, former_sql: str) -> tuple[tuple[int, str], tuple[int, str]]:
    """The view's rows and the former view's, as (count, hash) each."""
    return rows_hash(connection, f"select * from {VIEW}"), rows_hash(connection, former_sql)


def test_the_speed_layer_serves_what_deciding_every_staged_row_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    for key, value in demo_environment(data_dir).items():
        monkeypatch.setenv(key, value)
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=BUILT_DAY)
    for source in SOURCES:
        load_source(source)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        [(orphan_id, late_user, pushed_id)] = connection.sql(
            "select (select max(transaction_id) from raw_app.transactions) + 1000000, "
            "(select max(user_id) from raw_app.users) + 1000000, "
            "(select max(transaction_id) from raw_app.transactions) + 2000000"
        ).fetchall()
        orphan = {"transaction_id": orphan_id, "user_id": late_user, "day": BUILT_DAY.isoformat()}
        connection.execute(ORPHAN, orphan | {"load_id": new_app_load(connection)})
    build = run_dbt(["build"], dbt_vars=RUN_SETTINGS, quiet=True)
    assert build.success, build.failures
    former_sql = compiled_former_view()

    # (a) right after the build
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        after_build, former_after_build = served(connection, former_sql)
        assert after_build == former_after_build
        [(cutoff,)] = connection.sql(f"select max(transaction_date) from {VIEW} where served_from = 'speed'").fetchall()
        [(speed_rows,)] = connection.sql(f"select count(*) from {VIEW} where served_from = 'speed'").fetchall()
        assert speed_rows > 0

    # (b) rows loaded since, without a build: a new day's extract ...
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=BUILT_DAY + dt.timedelta(days=3))
    assert sum(sum(load_source(source).rows.values()) for source in ("app", "events")) > 0
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        # ... a new version of a transaction served from the speed layer, with another amount ...
        [(changed_id, amount_before)] = connection.sql(
            f"select transaction_id, amount_usd from {VIEW} where served_from = 'speed' order by transaction_id limit 1"
        ).fetchall()
        load_id = new_app_load(connection)
        connection.execute(NEW_VERSION, {"load_id": load_id, "transaction_id": changed_id})
        # ... the user of a transaction the build quarantined arrives ...
        [(rule,)] = connection.execute(
            "select rejection_rule from intermediate.int_transactions_validated where transaction_id = ?",
            [str(orphan_id)],
        ).fetchall()
        assert rule == "unknown_user"
        connection.execute(USER_ARRIVES, {"user_id": late_user, "load_id": load_id})
        # ... and a transaction and an event pushed to the stream (as the consumer loads them)
        stream_load = f"{float(load_id) + 1:.6f}"
        connection.execute(
            "insert into raw_stream._dlt_loads (load_id, schema_name, status, inserted_at) "
            "values (?, 'stream', 0, now())",
            [stream_load],
        )
        [(stream_user,)] = connection.sql("select user_id from raw_app.users order by user_id limit 1").fetchall()
        pushed_at = f"{BUILT_DAY + dt.timedelta(days=3)} 11:00:00"
        connection.execute(
            "insert into raw_stream.transactions (transaction_id, user_id, amount, currency, status, device_type, "
            "created_at, updated_at, _stream_message_id, _dlt_id, _dlt_load_id) "
            "values (?, ?, '12.50', 'USD', 'completed', 'mobile', ?, ?, 'message-1', 'pushed-row-1', ?)",
            [str(pushed_id), str(stream_user), pushed_at, pushed_at, stream_load],
        )
        connection.execute(
            "insert into raw_stream.events (event_id, user_id, event_type, occurred_at, _stream_message_id, "
            "_dlt_id, _dlt_load_id) values ('pushed-event-1', ?, 'page_view', ?, 'message-2', 'pushed-row-2', ?)",
            [str(stream_user), f"{BUILT_DAY + dt.timedelta(days=3)} 10:50:00", stream_load],
        )

    # the features join the users table as of the last build (both formulations): the arrived user's
    # row built there alone (the cleaning tables and the view stay as the build left them)
    users = run_dbt(["run", "--select", "int_users_cleaned", "online_users"], dbt_vars=RUN_SETTINGS, quiet=True)
    assert users.success, users.failures
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        after_loads, former_after_loads = served(connection, former_sql)
        assert after_loads == former_after_loads
        # the new rows are in it
        assert after_loads[0] > after_build[0]
        rows = dict(
            connection.execute(
                f"select transaction_id, amount_usd from {VIEW} where served_from = 'speed' "
                "and transaction_id in (?, ?, ?)",
                [changed_id, str(orphan_id), str(pushed_id)],
            ).fetchall()
        )
        assert set(rows) == {changed_id, str(orphan_id), str(pushed_id)}
        assert rows[changed_id] != amount_before
        [(session_events,)] = connection.execute(
            f"select session_events_before_txn from {VIEW} where transaction_id = ?", [str(pushed_id)]
        ).fetchall()
        assert session_events >= 1  # the pushed event, ten minutes before

    # (c) the cleaning tables take those rows in, the view is not recreated (a build that stopped
    # before it): the rows it compiled as new are in the tables now, and are taken once
    cleaning = run_dbt(
        ["run", "--select", "int_transactions_validated", "int_events_validated"], dbt_vars=RUN_SETTINGS, quiet=True
    )
    assert cleaning.success, cleaning.failures
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as connection:
        assert served(connection, former_sql) == (after_loads, after_loads)
