"""Train a fraud model on an exported training set and report validation metrics.

Reads the version named by `latest.json` (or a given manifest), trains scikit-learn's
HistGradientBoostingClassifier on the train split, scores the validation split (ROC AUC, PR AUC)
against a constant baseline, and writes the model beside the manifest hash it used.

A train split above `ML_FEATURES_TRAIN_MAX_ROWS` rows (default 1,000,000) is fitted on every fraud
row and a seeded uniform sample of the others, each sampled row weighted by the inverse of its
sampling rate, so the weighted loss estimates the full split's: negative downsampling, the usual
way to fit a rare-label model on millions of rows (a fraction of the fit time, the same ROC AUC:
docs/benchmarks.md). The validation split is always scored whole.

    data/models/training_set-<version>/model.joblib
    data/models/training_set-<version>/metrics.json
"""

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from extract.load import data_dir
from pipeline.warehouse.connections import relation_exists
from pipeline.warehouse.published import published_path

LABEL = "is_fraud"
NUMERIC_FEATURES = [
    "amount_usd_scaled",
    "hour_of_day",
    "day_of_week",
    "user_txn_count_1d",
    "user_txn_count_7d",
    "user_txn_count_30d",
    "user_amount_sum_7d",
    "user_amount_sum_30d",
    "user_amount_mean_30d",
    "seconds_since_prev_txn",
    "session_events_before_txn",
    "user_tenure_days",
    "age",
]
BOOLEAN_FEATURES = [
    "is_amount_outlier",
    "is_weekend",
    "is_age_imputed",
    "country_us",
    "country_uk",
    "country_ca",
    "country_au",
    "country_other",
    "device_mobile",
    "device_desktop",
    "device_tablet",
    "device_other",
]
LOYALTY_TIERS = {"bronze": 1, "silver": 2, "gold": 3, "platinum": 4}
SAMPLE_SEED = 0


NO_LABELS = (
    "no labels: the training set has no fraud labels at all (no chargebacks matched a transaction; "
    "is the chargebacks source turned off?)"
)
NOT_MATURED = "no labels have matured by the run date"


class TrainingError(RuntimeError):
    """The training set cannot be trained on (missing export, an empty split, one class only)."""


class NothingToLearn(TrainingError):
    """The training set has nothing a model can learn from yet (no rows, no fraud label): a reason to skip."""


@dataclass
class TrainingResult:
    manifest_hash: str
    version: str
    train_rows: int
    fitted_rows: int
    negative_sample_rate: float
    validation_rows: int
    validation_fraud_rate: float
    roc_auc: float
    pr_auc: float
    baseline_roc_auc: float
    baseline_pr_auc: float
    model_path: str
    trained_at: str

    @property
    def beats_baseline(self) -> bool:
        return self.roc_auc > self.baseline_roc_auc and self.pr_auc > self.baseline_pr_auc


def feature_matrix(table: pa.Table) -> np.ndarray:
    """The model's inputs: numeric features (nulls stay NaN), booleans as 0/1, tier as an ordinal.

    Filled column by column into one float64 matrix, the type the model validates its input to: any
    other type would be copied whole. With no DataFrame in between, the largest benchmark's training
    set stays within its memory limit (bench/run.py)."""
    columns = [*NUMERIC_FEATURES, *BOOLEAN_FEATURES]
    matrix = np.empty((table.num_rows, len(columns) + 1), dtype=np.float64)
    for index, name in enumerate(columns):
        matrix[:, index] = table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
    tiers = table.column("loyalty_tier").to_pandas().map(LOYALTY_TIERS).fillna(0)
    matrix[:, len(columns)] = tiers.to_numpy(dtype=np.float64)
    return matrix


def labels(table: pa.Table) -> np.ndarray:
    return table.column(LABEL).to_numpy(zero_copy_only=False).astype(int)


def max_train_rows() -> int:
    """`ML_FEATURES_TRAIN_MAX_ROWS`: the most rows the model is fitted on (default 1,000,000)."""
    value = os.environ.get("ML_FEATURES_TRAIN_MAX_ROWS", "1000000").replace("_", "")
    if not value.isdigit() or int(value) == 0:
        raise TrainingError(f"ML_FEATURES_TRAIN_MAX_ROWS must be a positive whole number of rows, not {value!r}")
    return int(value)


def negative_sample(truth: np.ndarray, max_rows: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows to fit on, their weights and the negatives' sampling rate: every row (rate 1) when there
    are at most `max_rows`; else every positive and a seeded uniform sample of the negatives, to
    about `max_rows` in all, each negative weighted 1 / rate."""
    if len(truth) <= max_rows:
        return np.arange(len(truth)), np.ones(len(truth)), 1.0
    positives, negatives = np.flatnonzero(truth == 1), np.flatnonzero(truth == 0)
    rate = max(max_rows - len(positives), 1) / len(negatives)
    kept = negatives[np.random.default_rng(SAMPLE_SEED).random(len(negatives)) < rate]
    rows = np.sort(np.concatenate([positives, kept]))
    return rows, np.where(truth[rows] == 1, 1.0, 1.0 / rate), rate


def load_split(version_dir: Path, split: str) -> pa.Table:
    """The rows of one split, only the columns the model reads."""
    dataset = ds.dataset(version_dir, format="parquet", partitioning="hive", exclude_invalid_files=True)
    columns = [*NUMERIC_FEATURES, *BOOLEAN_FEATURES, "loyalty_tier", LABEL]
    return dataset.to_table(columns=columns, filter=ds.field("split") == split)


def fraud_labels(version_dir: Path) -> int:
    """Rows labelled fraud in every split of the export."""
    dataset = ds.dataset(version_dir, format="parquet", partitioning="hive", exclude_invalid_files=True)
    return int(np.count_nonzero(labels(dataset.to_table(columns=[LABEL]))))


def train(manifest_path: Path | None = None, models_root: Path | None = None) -> TrainingResult:
    """Train on the train split of the export named by `manifest_path` (default: the latest)."""
    manifest_path = manifest_path or data_dir() / "exports" / "training_set" / "latest.json"
    if not manifest_path.exists():
        raise TrainingError(f"no training set export at {manifest_path}: run the export stage first")
    manifest = json.loads(manifest_path.read_text())
    if manifest["row_count"] == 0:
        raise NothingToLearn(f"training set {manifest['version']} is empty: {NOT_MATURED}")
    version_dir = Path(manifest["path"])
    if fraud_labels(version_dir) == 0:
        raise NothingToLearn(f"{NO_LABELS} ({manifest['row_count']:,} rows, every is_fraud false)")
    train_rows, validation_rows = load_split(version_dir, "train"), load_split(version_dir, "validation")
    train_truth, truth = labels(train_rows), labels(validation_rows)
    for name, split_truth in (("train", train_truth), ("validation", truth)):
        if len(np.unique(split_truth)) < 2:
            raise TrainingError(f"the {name} split of {manifest['version']} needs rows of both classes")
    fitted, weights, rate = negative_sample(train_truth, max_train_rows())
    features = feature_matrix(train_rows.take(fitted))
    del train_rows  # the matrix holds what the model needs: free the Arrow table before fitting
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
    model.fit(features, train_truth[fitted], sample_weight=weights)
    del features
    scores = model.predict_proba(feature_matrix(validation_rows))[:, 1]
    output_dir = (models_root or data_dir() / "models") / f"training_set-{manifest['version']}"
    output_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, output_dir / "model.joblib")
    result = TrainingResult(
        manifest_hash=manifest["content_hash"],
        version=manifest["version"],
        train_rows=len(train_truth),
        fitted_rows=len(fitted),
        negative_sample_rate=rate,
        validation_rows=len(truth),
        validation_fraud_rate=float(truth.mean()),
        roc_auc=float(roc_auc_score(truth, scores)),
        pr_auc=float(average_precision_score(truth, scores)),
        baseline_roc_auc=0.5,
        baseline_pr_auc=float(truth.mean()),
        model_path=str(output_dir / "model.joblib"),
        trained_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    (output_dir / "metrics.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def skip_reason(error: NothingToLearn) -> str:
    """Why there is nothing to learn: no transaction at all in the published gold (every row
    quarantined, or none loaded: then no label could ever mature, whatever the day), else `error`."""
    path = published_path()
    if path.exists():
        with duckdb.connect(str(path), read_only=True) as connection:
            if relation_exists(connection, "marts", "fct_transaction_features"):
                [(rows,)] = connection.sql("select count(*) from marts.fct_transaction_features").fetchall()
                if not rows:
                    return (
                        "no transactions: marts.fct_transaction_features is empty (every transaction was "
                        "quarantined, or none was loaded: see the quarantine in the summary)"
                    )
    return str(error)


def training_line(training: TrainingResult) -> str:
    return (
        f"[train] validation ROC AUC {training.roc_auc:.3f} (constant baseline {training.baseline_roc_auc:.3f}), "
        f"PR AUC {training.pr_auc:.3f} (baseline {training.baseline_pr_auc:.3f}) "
        f"on {training.validation_rows:,} rows; model {training.model_path}"
        + (
            f" (fitted on {training.fitted_rows:,} of {training.train_rows:,} train rows: every fraud, "
            f"{training.negative_sample_rate:.1%} of the rest, weighted)"
            if training.fitted_rows < training.train_rows
            else ""
        )
    )
