"""The same cleaning and point-in-time features as the dbt models, written in pandas.

This is the comparison point of the benchmark: how a notebook computes the features of
`fct_transaction_features`: read the raw tables, deduplicate, coerce types, reject bad rows,
convert amounts with `merge_asof`, then `groupby().rolling()` with time windows closed on the
left (so a window is [t - N days, t) and rows at the same timestamp are not "before").
It follows DESIGN.md's definitions exactly so its output can be checked against the warehouse's
(`compare`); the loyalty tier (which needs the users snapshot's history) is left out.
"""

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.train import BOOLEAN_FEATURES, LABEL, NUMERIC_FEATURES

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
    LABEL,
    "is_label_matured",
]


# the raw columns the features need (a notebook that read every column would need twice the memory);
# keys are read as text, as staging types them (an integer id becomes its decimal text)
RAW_COLUMNS = {
    "raw_app.transactions": (
        "cast(transaction_id as varchar) as transaction_id, cast(user_id as varchar) as user_id, "
        "amount, currency, device_type, created_at, updated_at"
    ),
    "raw_app.users": "cast(user_id as varchar) as user_id, age, country, signup_at, updated_at",
    "raw_events.events": "cast(event_id as varchar) as event_id, cast(user_id as varchar) as user_id, occurred_at",
    "raw_fx.rates": "date, currency, rate_to_usd",
    "raw_chargebacks.chargebacks": "cast(transaction_id as varchar) as transaction_id, reported_at",
}


ARROW_STRINGS = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}


def read_raw(warehouse: Path) -> dict[str, pd.DataFrame]:
    """The raw tables as dlt loaded them (only completed loads, as staging reads them), by short name."""
    frames = {}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        for table, columns in RAW_COLUMNS.items():
            dataset, name = table.split(".")
            ordered = ", _dlt_load_id, _dlt_id" if name in ("transactions", "users") else ""
            arrow = connection.sql(
                f"select {columns}{ordered} from {table} "
                f"where _dlt_load_id in (select load_id from {dataset}._dlt_loads where status = 0)"
            ).fetch_arrow_table()
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
    return users[["user_id", "age", "country_group", "signup_at"]]


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
    # transactions together needs five times the memory: about 20 GB at 10M transactions)
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


def features(raw: dict[str, pd.DataFrame], run_date: dt.date) -> pd.DataFrame:
    """`fct_transaction_features` without the loyalty tier, from the raw tables (consumed: emptied)."""
    users = clean_users(raw.pop("users"))  # each raw frame is dropped once cleaned: memory
    transactions = clean_transactions(raw.pop("transactions"), users, raw.pop("rates"))
    rows = history_windows(transactions, clean_events(raw.pop("events"), users))
    del transactions
    rows = rows.merge(users, on="user_id", how="inner")

    created = rows["created_at"]
    rows["hour_of_day"] = created.dt.hour
    rows["day_of_week"] = created.dt.day_of_week
    rows["is_weekend"] = rows["day_of_week"] >= 5
    rows["user_tenure_days"] = np.floor((created - rows["signup_at"]) / pd.Timedelta(days=1))
    for group in ["us", "uk", "ca", "au", "other"]:
        rows[f"country_{group}"] = rows["country_group"] == group
    for group in ["mobile", "desktop", "tablet", "other"]:
        rows[f"device_{group}"] = rows["device_group"] == group

    # time-based split of the days whose labels matured; parameters fitted on the train days only
    run_end = pd.Timestamp(run_date) + pd.Timedelta(days=1)
    rows["is_label_matured"] = created + LABEL_WINDOW <= run_end
    matured_days = np.sort(rows.loc[rows["is_label_matured"], "transaction_date"].unique())
    train_days = matured_days[: int(np.floor(len(matured_days) * TRAIN_FRACTION))]
    train = rows[rows["transaction_date"].isin(train_days)]
    mean, stddev = round(train["amount_usd"].mean(), 9), round(train["amount_usd"].std(), 9)
    p99 = train["amount_usd"].quantile(0.99)
    median_age = users.loc[users["user_id"].isin(train["user_id"]), "age"].median()
    rows["amount_usd_scaled"] = (rows["amount_usd"] - mean) / stddev
    rows["is_amount_outlier"] = rows["amount_usd"] > p99
    rows["is_age_imputed"] = rows["age"].isna()
    rows["age"] = rows["age"].fillna(median_age)

    chargebacks = raw.pop("chargebacks")
    chargebacks = chargebacks.assign(
        transaction_id=to_key(chargebacks["transaction_id"]),
        reported_at=to_utc(chargebacks["reported_at"]),
    )
    chargebacks = chargebacks.dropna(subset=["transaction_id", "reported_at"])
    first_report = chargebacks.groupby("transaction_id")["reported_at"].min().rename("first_reported_at")
    rows = rows.merge(first_report, left_on="transaction_id", right_index=True, how="left")
    reported = rows["first_reported_at"]
    rows["is_fraud"] = (reported <= rows["created_at"] + LABEL_WINDOW) & (reported < run_end)
    return rows[FEATURE_COLUMNS].sort_values("transaction_id", ignore_index=True)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a DuckDB file with the raw tables")
    parser.add_argument("--run-date", type=dt.date.fromisoformat, required=True, help="as dbt's var run_date")
    parser.add_argument(
        "--compare-with", type=Path, help="a warehouse whose marts.fct_transaction_features to check against"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    raw = read_raw(args.warehouse)
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    computed = features(raw, args.run_date)
    feature_seconds = time.perf_counter() - started
    del raw
    problems: list[str] = []
    if args.compare_with:
        with duckdb.connect(str(args.compare_with), read_only=True) as connection:
            expected = connection.sql(f"select {', '.join(FEATURE_COLUMNS)} from marts.fct_transaction_features").df()
        problems = compare(expected, computed)
        for problem in problems:
            print(f"pandas and dbt disagree: {problem}", file=sys.stderr)
    figures = {
        "rows": len(computed),
        "read_seconds": read_seconds,
        "feature_seconds": feature_seconds,
        "problems": problems,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
