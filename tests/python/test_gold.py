"""Gold layer: incremental days are idempotent, the export is versioned by content, the model learns,
and the realtime view serves rows loaded after the last batch build."""

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import RUN_DATE, TEST_SCALE, TEST_SEED, Warehouse, demo_environment, table_hash

from demo.generate import generate
from extract.load import SOURCES, load_source
from pipeline.training.export import export_training_set
from pipeline.training.train import TrainingError, negative_sample, train
from pipeline.warehouse.dbt_runner import run_dbt

INCREMENTAL_MODELS = ("intermediate.int_transactions_windowed", "marts.user_daily_features")


def test_rebuilding_days_gives_identical_rows(warehouse_copy: Warehouse) -> None:
    before = {relation: table_hash(warehouse_copy.duckdb_path, relation) for relation in INCREMENTAL_MODELS}
    assert all(rows > 0 for rows, _ in before.values())
    one_day = {"run_date": RUN_DATE, "from_date": "2026-03-02", "to_date": "2026-03-02"}
    some_days = {"run_date": RUN_DATE, "from_date": "2026-02-27", "to_date": "2026-03-04"}
    for dbt_vars in (one_day, some_days, {"run_date": RUN_DATE}):
        selection = ["run", "-s", "int_transactions_windowed", "user_daily_features"]
        build = run_dbt(selection, dbt_vars=dbt_vars, quiet=True)
        assert build.success, build.failures
        after = {relation: table_hash(warehouse_copy.duckdb_path, relation) for relation in INCREMENTAL_MODELS}
        assert after == before, dbt_vars


def test_a_day_build_touches_only_that_day(warehouse_copy: Warehouse) -> None:
    """Delete one day's rows, rebuild only that day: the day comes back and nothing else changes."""
    before = table_hash(warehouse_copy.duckdb_path, "intermediate.int_transactions_windowed")
    with duckdb.connect(str(warehouse_copy.duckdb_path)) as connection:
        connection.execute("delete from intermediate.int_transactions_windowed where transaction_date = '2026-04-15'")
    missing = table_hash(warehouse_copy.duckdb_path, "intermediate.int_transactions_windowed")
    assert missing[0] < before[0]
    dbt_vars = {"run_date": RUN_DATE, "from_date": "2026-04-15", "to_date": "2026-04-15"}
    assert run_dbt(["run", "-s", "int_transactions_windowed"], dbt_vars=dbt_vars, quiet=True).success
    assert table_hash(warehouse_copy.duckdb_path, "intermediate.int_transactions_windowed") == before


def test_export_is_versioned_by_content_and_reused(built_warehouse: Warehouse, tmp_path: Path) -> None:
    first = export_training_set(str(built_warehouse.duckdb_path), tmp_path)
    second = export_training_set(str(built_warehouse.duckdb_path), tmp_path)
    [(rows,)] = built_warehouse.query("select count(*) from marts.training_set")
    assert first.row_count == rows > 0
    assert (second.version, second.content_hash) == (first.version, first.content_hash)
    assert not first.reused and second.reused
    version_dir = tmp_path / "training_set" / f"version={first.version}"
    partitions = sorted(path.name for path in version_dir.glob("date=*"))
    assert len(partitions) == first.partitions > 1 and partitions[0].startswith("date=2026-")
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["content_hash"] == first.content_hash
    assert set(manifest["split_counts"]) == {"train", "validation", "test"}
    assert set(manifest["source_load_ids"]) == {f"raw_{source}" for source in SOURCES}
    assert all(manifest["source_load_ids"].values())
    assert len(manifest["dbt_invocation_id"]) == 36
    assert json.loads((tmp_path / "training_set" / "latest.json").read_text())["version"] == first.version


def test_model_beats_a_constant_baseline(built_warehouse: Warehouse, tmp_path: Path) -> None:
    export_training_set(str(built_warehouse.duckdb_path), tmp_path / "exports")
    result = train(tmp_path / "exports" / "training_set" / "latest.json", tmp_path / "models")
    assert result.validation_rows > 0 and 0 < result.validation_fraud_rate < 0.2
    assert result.roc_auc > 0.6, result
    assert result.pr_auc > 2 * result.baseline_pr_auc, result
    metrics = json.loads((Path(result.model_path).parent / "metrics.json").read_text())
    assert metrics["manifest_hash"] == result.manifest_hash


def test_a_large_train_split_is_fitted_on_every_fraud_and_a_weighted_sample_of_the_rest(
    built_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = np.array([1] * 50 + [0] * 9950)
    rows, weights, rate = negative_sample(truth, 1000)
    assert set(np.flatnonzero(truth == 1)) <= set(rows) and 900 < len(rows) < 1100
    assert rate == pytest.approx(950 / 9950)
    assert weights[truth[rows] == 0] == pytest.approx(1 / rate) and set(weights[truth[rows] == 1]) == {1.0}
    assert weights.sum() == pytest.approx(len(truth), rel=0.1)  # the sample stands for the whole split
    assert np.array_equal(negative_sample(truth, 1000)[0], rows)  # seeded: the same rows every run
    assert negative_sample(truth, 20000)[2] == 1.0

    export_training_set(str(built_warehouse.duckdb_path), tmp_path / "exports")
    monkeypatch.setenv("ML_FEATURES_TRAIN_MAX_ROWS", "400")
    result = train(tmp_path / "exports" / "training_set" / "latest.json", tmp_path / "models")
    assert result.fitted_rows < 450 < result.train_rows and 0 < result.negative_sample_rate < 1
    assert result.roc_auc > 0.6, result
    monkeypatch.setenv("ML_FEATURES_TRAIN_MAX_ROWS", "many")
    with pytest.raises(TrainingError, match="ML_FEATURES_TRAIN_MAX_ROWS must be a positive whole number"):
        train(tmp_path / "exports" / "training_set" / "latest.json", tmp_path / "models")


def test_realtime_view_serves_the_batch_and_rows_loaded_since(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    for key, value in demo_environment(data_dir).items():
        monkeypatch.setenv(key, value)
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=dt.date(2026, 3, 1))
    for source in SOURCES:
        load_source(source)
    assert run_dbt(["build"], dbt_vars={"run_date": "2026-03-01"}, quiet=True).success
    generate(data_dir / "demo", seed=TEST_SEED, scale=TEST_SCALE, as_of=dt.date(2026, 3, 4))
    new_rows = sum(sum(load_source(source).rows.values()) for source in ("app", "events"))
    assert new_rows > 0
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        served = dict(
            connection.sql(
                "select served_from, max(transaction_date) from marts.realtime_transaction_features group by 1"
            ).fetchall()
        )
        [(batch_rows,)] = connection.sql("select count(*) from marts.fct_transaction_features").fetchall()
        [(batch_max,)] = connection.sql("select max(transaction_date) from marts.fct_transaction_features").fetchall()
        [(fresh,)] = connection.sql(
            f"select count(*) from marts.realtime_transaction_features where transaction_date > date '{batch_max}'"
        ).fetchall()
    assert str(served["speed"]) == "2026-03-04"
    assert served["batch"] < batch_max
    assert fresh > 0 and batch_rows > 0
