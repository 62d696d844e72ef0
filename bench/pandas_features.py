"""The same cleaning and point-in-time features as the dbt models, written in pandas.

This is the comparison point of the benchmark: how a notebook computes the features of
`fct_transaction_features`: read the raw tables, deduplicate, coerce types, reject bad rows,
convert amounts with `merge_asof`, then `groupby().rolling()` with time windows closed on the
left (so a window is [t - N days, t) and rows at the same timestamp are not "before").
It follows DESIGN.md's definitions exactly so its output can be checked against the warehouse's
(`compare`), every column of `fct_transaction_features` included (the loyalty tier as of the
transaction, as the users snapshot's first version gives it: the user's tier from its latest
`updated_at` on).

`python -m bench.pandas_features` works through the users in chunks (`--chunks`: every row of a
user in one chunk, since the windows are per user) so its memory stays bounded at any scale:
  1. per chunk: read the chunk's raw rows, clean them and compute every per-row feature, write
     them to a Parquet file;
  2. fit the parameters on the training window (its days, then the amounts and the ages of its
     users), from the chunks' files;
  3. per chunk: apply the fitted parameters and write the chunk's final features as Parquet.
The output is the same as computing every user at once (`features`); `--compare-with` checks it,
chunk by chunk, against the warehouse's `marts.fct_transaction_features` (not timed).
"""

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.training.train import BOOLEAN_FEATURES, LABEL, NUMERIC_FEATURES

REPO_ROOT = Path(__file__).resolve().parents[1]
LABEL_WINDOW = pd.Timedelta(days=60)
TRAIN_FRACTION = 0.70
# dbt's var reporting_currency: amounts in it convert at 1 without a rate row
REPORTING_CURRENCY = "USD"
# the columns of fct_transaction_features it computes: ids, amount, the model's features, the label
FEATURE_COLUMNS = [
    "transaction_id",
    "user_id",
    "created_at",
    "transaction_date",
    "amount_usd",
    *NUMERIC_FEATURES,
    *BOOLEAN_FEATURES,
    "loyalty_tier",
    LABEL,
    "is_label_matured",
]
# the per-row features before the fitted parameters are applied: what a chunk's first pass writes
UNFITTED_COLUMNS = [
    *(column for column in FEATURE_COLUMNS if column not in ("amount_usd_scaled", "is_amount_outlier", "age")),
    "raw_age",
]


# the raw columns the features need (a notebook that read every column would need twice the memory);
# keys are read as text, as staging types them (an integer id becomes its decimal text)
RAW_COLUMNS = {
    "raw_app.transactions": (
        "cast(transaction_id as varchar) as transaction_id, cast(user_id as varchar) as user_id, "
        "amount, currency, device_type, created_at, updated_at"
    ),
    "raw_app.users": "cast(user_id as varchar) as user_id, age, country, signup_at, updated_at, loyalty_tier",
    "raw_events.events": "cast(event_id as varchar) as event_id, cast(user_id as varchar) as user_id, occurred_at",
    "raw_fx.rates": "date, currency, rate_to_usd",
    "raw_chargebacks.chargebacks": "cast(transaction_id as varchar) as transaction_id, reported_at",
}


# raw transactions per chunk by default: the peak memory follows the chunk, not the scale (docs/benchmarks.md)
ROWS_PER_CHUNK = 1_000_000
# read a chunk at a time (the FX rates whole with each: a few thousand rows); the chargebacks once
CHUNKED_TABLES = ("raw_app.transactions", "raw_app.users", "raw_events.events", "raw_fx.rates")

ARROW_STRINGS = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}


def user_key(column: str = "user_id") -> str:
    """A raw key as the cleaning reads it (text, trimmed): what chunks are split on."""
    return f"trim(cast({column} as varchar))"


def read_raw(
    warehouse: Path, chunk: int = 0, chunks: int = 1, tables: tuple[str, ...] = tuple(RAW_COLUMNS)
) -> dict[str, pd.DataFrame]:
    """The raw tables as dlt loaded them (only completed loads, as staging reads them), by short name.
    With `chunks` > 1: only the rows of the users whose key hashes to `chunk` (and every version of a
    transaction one of whose versions is theirs: the latest version decides its user)."""
    frames = {}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        for table in tables:
            columns = RAW_COLUMNS[table]
            dataset, name = table.split(".")
            present = {
                column
                for (column,) in connection.execute(
                    "select column_name from duckdb_columns() where schema_name = ? and table_name = ?",
                    [dataset, name],
                ).fetchall()
            }
            if "loyalty_tier" not in present:  # the column appears part-way (schema evolution)
                columns = columns.replace("loyalty_tier", "cast(null as varchar) as loyalty_tier")
            ordered = ", _dlt_load_id, _dlt_id" if name in ("transactions", "users") else ""
            where = f"_dlt_load_id in (select load_id from {dataset}._dlt_loads where status = 0)"
            mine = f"hash({user_key()}) % {chunks} = {chunk}"
            if chunks > 1 and name in ("users", "events"):
                where += f" and {mine}"
            elif chunks > 1 and name == "transactions":
                where += (
                    f" and {user_key('transaction_id')} in "
                    f"(select {user_key('transaction_id')} from {table} where {mine})"
                )
            arrow = connection.sql(f"select {columns}{ordered} from {table} where {where}").fetch_arrow_table()
            # text as Arrow-backed strings: a third of the memory of Python string objects
            frames[name] = arrow.to_pandas(types_mapper=ARROW_STRINGS.get)
    return frames


def to_utc(values: pd.Series) -> pd.Series:
    """Text or timestamps to naive UTC timestamps; what does not parse becomes NaT."""
    parsed = pd.to_datetime(values.replace("", None), format="ISO8601", utc=True, errors="coerce")
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def to_key(values: pd.Series) -> pd.Series:
    """A key as text, trimmed; empty is missing. Keys compare as exact text ('00002' is not '2')."""
    return values.astype("string").str.strip().replace("", pd.NA)


def to_number(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce")


def latest_version(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per key: the latest `updated_at`, then the newest load, then the smallest row id."""
    ordered = frame.sort_values(
        ["updated_at", "_dlt_load_id", "_dlt_id"], ascending=[False, False, True], na_position="last"
    )
    return ordered.drop_duplicates(key, keep="first")


def clean_users(raw: pd.DataFrame) -> pd.DataFrame:
    users = raw.assign(user_id=to_key(raw["user_id"])).dropna(subset=["user_id"])
    users["updated_at"] = to_utc(users["updated_at"])
    users = latest_version(users, "user_id")
    countries = pd.read_csv(REPO_ROOT / "seeds" / "country_codes.csv")
    group = dict(zip(countries["raw_value"], countries["country_group"], strict=True))
    users["country_group"] = users["country"].str.strip().str.lower().map(group).fillna("other")
    age = users["age"].astype("float64")
    users["age"] = age.where(age.between(0, 120))
    users["signup_at"] = to_utc(users["signup_at"])
    users["loyalty_tier"] = users["loyalty_tier"].str.strip().str.lower().replace("", pd.NA)
    return users[["user_id", "age", "country_group", "signup_at", "updated_at", "loyalty_tier"]]


def clean_transactions(raw: pd.DataFrame, users: pd.DataFrame, raw_rates: pd.DataFrame) -> pd.DataFrame:
    """Valid transactions, deduplicated, with amount_usd at the latest rate on or before their date."""
    transactions = raw.assign(transaction_id=to_key(raw["transaction_id"]), user_id=to_key(raw["user_id"]))
    transactions = transactions.dropna(subset=["transaction_id"])
    transactions["updated_at"] = to_utc(transactions["updated_at"])
    transactions = latest_version(transactions, "transaction_id")
    transactions["created_at"] = to_utc(transactions["created_at"])
    transactions["amount"] = to_number(transactions["amount"])
    transactions["currency"] = transactions["currency"].str.strip().str.upper()
    known_currencies = set(pd.read_csv(REPO_ROOT / "seeds" / "currencies.csv")["currency"])
    transactions = transactions[
        transactions["created_at"].notna()
        & transactions["amount"].notna()
        & (transactions["amount"] >= 0)
        & transactions["currency"].isin(known_currencies)
    ]
    transactions["transaction_date"] = transactions["created_at"].dt.floor("D")

    rates = raw_rates.assign(
        rate_date=pd.to_datetime(raw_rates["date"], errors="coerce").astype("datetime64[us]"),
        currency=raw_rates["currency"].str.strip().str.upper(),
        rate_to_usd=to_number(raw_rates["rate_to_usd"]),
    )
    rates = rates[rates["rate_date"].notna() & (rates["rate_to_usd"] > 0)][["rate_date", "currency", "rate_to_usd"]]
    transactions = pd.merge_asof(
        transactions.sort_values("transaction_date"),
        rates.sort_values("rate_date"),
        left_on="transaction_date",
        right_on="rate_date",
        by="currency",
    )
    transactions.loc[transactions["currency"] == REPORTING_CURRENCY, "rate_to_usd"] = 1.0
    transactions = transactions[transactions["rate_to_usd"].notna() & transactions["user_id"].isin(users["user_id"])]
    transactions["amount_usd"] = (transactions["amount"] * transactions["rate_to_usd"]).round(6)
    device = transactions["device_type"].str.strip().str.lower()
    transactions["device_group"] = device.where(device.isin(["mobile", "desktop", "tablet"]), "other")
    columns = ["transaction_id", "user_id", "created_at", "transaction_date", "amount_usd", "device_group"]
    return transactions[columns]


def clean_events(raw: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """Valid events, each delivered event once: user_id and occurred_at (the deliveries of one event
    are the same event, so any one of them gives the same features)."""
    events = raw.assign(event_id=to_key(raw["event_id"]), user_id=to_key(raw["user_id"]))
    events = events.drop_duplicates("event_id", keep="first")
    events = events.assign(occurred_at=to_utc(events["occurred_at"]))
    events = events[events["occurred_at"].notna() & events["user_id"].isin(users["user_id"])]
    return events[["user_id", "occurred_at"]]


def history_windows(transactions: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per transaction: the user's transactions and events in windows [t - N, t) over exact durations."""
    by_time = transactions.sort_values(["user_id", "created_at"]).set_index("created_at")
    rolling = by_time.assign(one=1.0).groupby("user_id")[["one", "amount_usd"]]
    windows = {}
    for name, span in {"1d": "1D", "7d": "7D", "30d": "30D"}.items():
        totals = rolling.rolling(span, closed="left").sum()
        windows[f"user_txn_count_{name}"] = totals["one"].fillna(0).astype("int64").to_numpy()
        windows[f"user_amount_sum_{name}"] = totals["amount_usd"].fillna(0).to_numpy()
    features = by_time.reset_index().assign(**windows)
    features["user_amount_mean_30d"] = features["user_amount_sum_30d"] / features["user_txn_count_30d"].where(
        features["user_txn_count_30d"] > 0
    )
    features = features.drop(columns=["user_amount_sum_1d"])

    # the latest earlier transaction: the previous distinct timestamp of the user (ties are not "before")
    moments = features[["user_id", "created_at"]].drop_duplicates()
    moments["previous_at"] = moments.groupby("user_id")["created_at"].shift()
    features = features.merge(moments, on=["user_id", "created_at"], how="left")
    features["seconds_since_prev_txn"] = (features["created_at"] - features["previous_at"]).dt.total_seconds()

    # events of the user in [t - 30 min, t): the user's running event count strictly before t minus
    # the one strictly before t - 30 min, each found with merge_asof (a rolling window over events and
    # transactions together needs several times the memory)
    stream = events.sort_values("occurred_at", kind="stable")
    stream = stream.assign(seen=stream.groupby("user_id").cumcount() + 1)
    session = features[["transaction_id", "user_id", "created_at"]].sort_values("created_at")

    def events_before(moment: pd.Series) -> np.ndarray:
        found = pd.merge_asof(
            session.assign(moment=moment),
            stream,
            left_on="moment",
            right_on="occurred_at",
            by="user_id",
            allow_exact_matches=False,
        )
        return found["seen"].fillna(0).to_numpy("int64")

    window_start = session["created_at"] - pd.Timedelta(minutes=30)
    session["session_events_before_txn"] = events_before(session["created_at"]) - events_before(window_start)
    return features.merge(session[["transaction_id", "session_events_before_txn"]], on="transaction_id", how="left")


def chunk_features(raw: dict[str, pd.DataFrame], chargebacks: pd.DataFrame, run_date: dt.date) -> pd.DataFrame:
    """Every per-row feature of the users in `raw` (consumed: emptied), before the fitted parameters:
    UNFITTED_COLUMNS, with the user's age as given (raw_age)."""
    users = clean_users(raw.pop("users"))  # each raw frame is dropped once cleaned: memory
    transactions = clean_transactions(raw.pop("transactions"), users, raw.pop("rates"))
    rows = history_windows(transactions, clean_events(raw.pop("events"), users))
    del transactions
    rows = rows.merge(users.rename(columns={"updated_at": "user_updated_at"}), on="user_id", how="inner")

    created = rows["created_at"]
    rows["hour_of_day"] = created.dt.hour
    rows["day_of_week"] = created.dt.day_of_week
    rows["is_weekend"] = rows["day_of_week"] >= 5
    rows["user_tenure_days"] = np.floor((created - rows["signup_at"]) / pd.Timedelta(days=1))
    for group in ["us", "uk", "ca", "au", "other"]:
        rows[f"country_{group}"] = rows["country_group"] == group
    for group in ["mobile", "desktop", "tablet", "other"]:
        rows[f"device_{group}"] = rows["device_group"] == group
    # the snapshot's first version: the user's current row, valid from its updated_at
    rows["loyalty_tier"] = rows["loyalty_tier"].where(created >= rows["user_updated_at"])
    rows["is_age_imputed"] = rows["age"].isna()
    rows["raw_age"] = rows["age"]

    run_end = pd.Timestamp(run_date) + pd.Timedelta(days=1)
    rows["is_label_matured"] = created + LABEL_WINDOW <= run_end
    first_report = chargebacks.groupby("transaction_id")["reported_at"].min().rename("first_reported_at")
    rows = rows.merge(first_report, left_on="transaction_id", right_index=True, how="left")
    reported = rows["first_reported_at"]
    rows["is_fraud"] = (reported <= rows["created_at"] + LABEL_WINDOW) & (reported < run_end)
    return rows[UNFITTED_COLUMNS]


def clean_chargebacks(raw: pd.DataFrame) -> pd.DataFrame:
    chargebacks = raw.assign(
        transaction_id=to_key(raw["transaction_id"]),
        reported_at=to_utc(raw["reported_at"]),
    )
    return chargebacks.dropna(subset=["transaction_id", "reported_at"])


@dataclass
class Parameters:
    """Fitted on the training window: the train split of the days whose labels matured."""

    mean: float
    stddev: float
    p99: float
    median_age: float


def training_days(matured_days: np.ndarray) -> np.ndarray:
    """The first TRAIN_FRACTION of the (distinct) days with matured labels: the time-based train split."""
    days = np.sort(np.unique(matured_days))
    return days[: int(np.floor(len(days) * TRAIN_FRACTION))]


def fit(amounts: pd.Series, ages: pd.Series) -> Parameters:
    """The scaler and outlier threshold from the training rows' amounts, the imputer from the ages of
    their users (one per user)."""
    return Parameters(
        mean=round(amounts.mean(), 9),
        stddev=round(amounts.std(), 9),
        p99=amounts.quantile(0.99),
        median_age=ages.median(),
    )


def training_inputs(rows: pd.DataFrame, train_days: np.ndarray) -> tuple[pd.Series, pd.Series]:
    """The amounts of the rows on training days, and the age of each of their users."""
    train = rows[rows["transaction_date"].isin(train_days)]
    ages = train.drop_duplicates("user_id")["raw_age"]
    return train["amount_usd"].reset_index(drop=True), ages.reset_index(drop=True)


def apply(rows: pd.DataFrame, parameters: Parameters) -> pd.DataFrame:
    """The final features: the fitted parameters applied, in FEATURE_COLUMNS order, by transaction_id."""
    rows = rows.assign(
        amount_usd_scaled=(rows["amount_usd"] - parameters.mean) / parameters.stddev,
        is_amount_outlier=rows["amount_usd"] > parameters.p99,
        age=rows["raw_age"].fillna(parameters.median_age),
    )
    return rows[FEATURE_COLUMNS].sort_values("transaction_id", ignore_index=True)


def features(raw: dict[str, pd.DataFrame], run_date: dt.date) -> pd.DataFrame:
    """`fct_transaction_features` from the raw tables (consumed: emptied), every user at once."""
    chargebacks = clean_chargebacks(raw.pop("chargebacks"))
    rows = chunk_features(raw, chargebacks, run_date)
    train_days = training_days(rows.loc[rows["is_label_matured"], "transaction_date"].to_numpy())
    return apply(rows, fit(*training_inputs(rows, train_days)))


@dataclass
class Timings:
    read_seconds: float = 0.0
    feature_seconds: float = 0.0
    rows: int = 0


def features_by_chunk(
    warehouse: Path, run_date: dt.date, chunks: int, workdir: Path, timings: Timings
) -> Iterator[pd.DataFrame]:
    """`features`, users in `chunks` chunks: yields each chunk's final features (also written to
    `workdir`/features-<chunk>.parquet). `timings` adds up the reading and the computing, not what
    the caller does with a chunk between two."""

    def timed(field: str, started: float) -> None:
        setattr(timings, field, getattr(timings, field) + time.perf_counter() - started)

    started = time.perf_counter()
    chargebacks_raw = read_raw(warehouse, tables=("raw_chargebacks.chargebacks",))["chargebacks"]
    timed("read_seconds", started)
    started = time.perf_counter()
    chargebacks = clean_chargebacks(chargebacks_raw)
    del chargebacks_raw
    matured: list[np.ndarray] = []
    unfitted = [workdir / f"unfitted-{chunk}.parquet" for chunk in range(chunks)]
    timed("feature_seconds", started)
    for chunk, path in enumerate(unfitted):
        started = time.perf_counter()
        raw = read_raw(warehouse, chunk, chunks, tables=CHUNKED_TABLES)
        timed("read_seconds", started)
        started = time.perf_counter()
        rows = chunk_features(raw, chargebacks, run_date)
        del raw
        matured.append(rows.loc[rows["is_label_matured"], "transaction_date"].unique())
        rows.to_parquet(path, index=False)
        timed("feature_seconds", started)
        print(f"chunk {chunk + 1} of {chunks}: {len(rows):,} transactions", file=sys.stderr, flush=True)
        del rows

    started = time.perf_counter()
    train_days = training_days(np.concatenate(matured))
    amounts, ages = [], []
    for path in unfitted:
        rows = pd.read_parquet(path, columns=["transaction_date", "amount_usd", "user_id", "raw_age"])
        chunk_amounts, chunk_ages = training_inputs(rows, train_days)
        amounts.append(chunk_amounts)
        ages.append(chunk_ages)
    parameters = fit(pd.concat(amounts, ignore_index=True), pd.concat(ages, ignore_index=True))
    del amounts, ages
    timed("feature_seconds", started)

    for chunk, path in enumerate(unfitted):
        started = time.perf_counter()
        final = apply(pd.read_parquet(path), parameters)
        final.to_parquet(workdir / f"features-{chunk}.parquet", index=False)
        path.unlink()
        timings.rows += len(final)
        timed("feature_seconds", started)
        yield final


def compare(expected: pd.DataFrame, actual: pd.DataFrame, tolerance: float = 1e-6) -> list[str]:
    """Where two feature frames (one row per transaction_id) disagree: one line per problem, empty if none."""
    problems = []
    joined = expected.merge(actual, on="transaction_id", how="outer", suffixes=("_expected", "_actual"), indicator=True)
    for side, label in [("left_only", "only in the first"), ("right_only", "only in the second")]:
        count = int((joined["_merge"] == side).sum())
        if count:
            problems.append(f"{count:,} transaction(s) {label}")
    both = joined[joined["_merge"] == "both"]
    for column in FEATURE_COLUMNS[1:]:
        left, right = both[f"{column}_expected"], both[f"{column}_actual"]
        if pd.api.types.is_numeric_dtype(left) and not pd.api.types.is_bool_dtype(left):
            left, right = left.astype("float64"), right.astype("float64")
            same = np.isclose(left, right, rtol=tolerance, atol=tolerance, equal_nan=True)
        else:
            same = (left == right) | (left.isna() & right.isna())
        different = int((~np.asarray(same)).sum())
        if different:
            example = both.loc[~np.asarray(same), ["transaction_id", f"{column}_expected", f"{column}_actual"]].head(1)
            problems.append(f"{column}: {different:,} row(s) differ, e.g. {example.to_dict('records')[0]}")
    return problems


def chunk_count(warehouse: Path, rows_per_chunk: int) -> int:
    """Enough chunks for about `rows_per_chunk` raw transactions each."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.sql("select count(*) from raw_app.transactions").fetchone()[0]
    return max(1, -(-rows // rows_per_chunk))


def expected_chunk(warehouse: Path, chunk: int, chunks: int) -> pd.DataFrame:
    """The rows of marts.fct_transaction_features of the chunk's users."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.sql(
            f"select {', '.join(FEATURE_COLUMNS)} from marts.fct_transaction_features "
            f"where hash({user_key()}) % {chunks} = {chunk}"
        ).df()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a DuckDB file with the raw tables")
    parser.add_argument("--run-date", type=dt.date.fromisoformat, required=True, help="as dbt's var run_date")
    parser.add_argument(
        "--compare-with", type=Path, help="a warehouse whose marts.fct_transaction_features to check against"
    )
    parser.add_argument("--chunks", type=int, help="user chunks (default: about --rows-per-chunk transactions each)")
    parser.add_argument("--rows-per-chunk", type=int, default=ROWS_PER_CHUNK, help="raw transactions per chunk")
    parser.add_argument("--workdir", type=Path, help="where the Parquet output goes (default: a temporary folder)")
    args = parser.parse_args(argv)
    chunks = args.chunks or chunk_count(args.warehouse, args.rows_per_chunk)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pandas_features-"))
    workdir.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    problems: list[str] = []
    try:
        computed = features_by_chunk(args.warehouse, args.run_date, chunks, workdir, timings)
        for chunk, final in enumerate(computed):
            if args.compare_with:
                problems += [
                    f"users of chunk {chunk}: {problem}"
                    for problem in compare(expected_chunk(args.compare_with, chunk, chunks), final)
                ]
            del final
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    for problem in problems:
        print(f"pandas and dbt disagree: {problem}", file=sys.stderr)
    figures = {
        "rows": timings.rows,
        "chunks": chunks,
        "read_seconds": timings.read_seconds,
        "feature_seconds": timings.feature_seconds,
        "problems": problems,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
