"""Deterministic demo sources for ml-features: `python -m demo.generate --out data/demo --scale 100000`.

The full history of a fictional shop is simulated once, with numpy, for the window [start, end]:
users, transactions (with their status changes), clickstream events, daily FX rates and the
chargebacks that label fraud weeks later. The files then hold only what the source systems
would hold at the end of day `as_of`, so the pipeline can be replayed day by day:

- `app.sqlite`: the app database (`users`, `transactions`), current versions of rows only;
  `users.loyalty_tier` appears once `as_of` reaches the loyalty launch (schema evolution).
- `events/date=YYYY-MM-DD/batch-HH.parquet`: clickstream micro-batches, one per 6-hour window.
- `fx_rates.parquet`: business-day FX rates, served by `demo/fx_api_server.py`.
- `bucket/chargebacks/reported_date=YYYY-MM-DD/chargebacks.{csv,jsonl,parquet}`: weekly label files.

The same seed, scale and dates give byte-identical files with identical modification times.
Memory stays small at any scale: the history is kept as narrow numpy arrays and the rows are
rendered and written a chunk (app rows) or a 6-hour batch (events) at a time. Generated again into
the same folder as of a later day, it writes only what changed (`generate`): the folder then holds
the same content as a fresh generation as of that day (the app database's rows, in the same order).
The data has the defects real sources have (duplicates, nulls, outliers, messy text, late rows,
bad records) and a learnable fraud signal (amount vs the user's usual, night hours, new accounts,
bursts of transactions, mobile devices).
"""

import argparse
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MINUTE = 60
HOUR = 3_600
DAY = 86_400
BATCH_SECONDS = 6 * HOUR
NEVER = np.iinfo(np.int64).max

CURRENCIES = np.array(["USD", "EUR", "GBP", "CAD", "AUD"], dtype=object)
CURRENCY_P = [0.50, 0.17, 0.13, 0.11, 0.09]
BASE_RATES = np.array([1.0, 1.08, 1.27, 0.73, 0.66])
DEVICES = np.array(["mobile", "desktop", "tablet", "smart_tv"], dtype=object)
DEVICE_P = [0.55, 0.30, 0.13, 0.02]
MOBILE = 0
TIERS = np.array(["bronze", "silver", "gold", "platinum"], dtype=object)
TIER_P = [0.50, 0.30, 0.15, 0.05]
STATUSES = np.array(["pending", "completed", "failed", "refunded"], dtype=object)
EVENT_TYPES = np.array(["page_view", "search", "add_to_cart", "checkout", "login"], dtype=object)
PAGE_VIEW, SEARCH, ADD_TO_CART, CHECKOUT, LOGIN = range(5)
REASONS = np.array(["fraud", "stolen_card", "not_recognised"], dtype=object)

# transactions: hour-of-day weights (UTC); the night (0-5) is quiet, and where fraud concentrates
HOUR_WEIGHTS = np.array([0.25] * 6 + [0.5, 0.7, 0.9] + [1.0] * 13 + [0.8, 0.5])
FRAUD_RATE = 0.015
LOYALTY_LAUNCH_FRACTION = 0.6

FIRST_NAMES = (
    "Alice Bob Carol David Emma Frank Grace Henry Isla James Karen Liam Maria Noah Olivia Peter Quinn Rosa "
    "Sam Tara Umar Vera Will Xena Yusuf Zoe Aiko Bruno Chloe Diego Elena Farah Goran Hana Ivan Jonas Kofi "
    "Lena Mateo Nadia"
).split()
LAST_NAMES = (
    "Smith Jones Brown Taylor Wilson Davies Evans Thomas Johnson Roberts Walker Wright Robinson Thompson "
    "White Hughes Edwards Green Hall Wood Harris Lewis Martin Jackson Clarke Clark Turner Hill Scott Cooper "
    "Morris Ward Moore King Watson Baker Harrison Morgan Patel Young"
).split()
EMAIL_DOMAINS = ["example.com", "mail.example.org", "inbox.example.net", "post.example.io"]
# (variants a messy app stores for the country, share among users)
COUNTRIES: list[tuple[list[str | None], float]] = [
    (["US", " us", "us", "USA", "United States "], 0.45),
    (["UK", "Uk", " uk", "GB", "United Kingdom"], 0.20),
    (["CA", "ca ", "Canada"], 0.14),
    (["AU", " au", "Australia"], 0.105),
    (["DE", "FR", "BR", "IN", "ES", "IT", "MX", "JP", "NL", "de", "Fr "], 0.10),
    (["XX", "Narnia", None], 0.005),
]
BAD_AGES = np.array([-3, -1, 150, 200, 999])
BAD_TIMESTAMPS = np.array(["not a date", "2026-13-45 99:00:00", "", "31/02/2026 10:00", "yesterday"], dtype=object)
OFFSET_MINUTES = np.array([120, 60, -300, -240, 330, 540, -480, 600])
NON_NUMERIC_AMOUNTS = ["N/A", "abc", "", "n/a", "--"]
UNKNOWN_CURRENCIES = np.array(["XYZ", "BTC", "???"], dtype=object)
MESSY_DEVICES = {
    "mobile": [" Mobile", "MOBILE", "mobile ", "Mobile"],
    "desktop": ["DESKTOP", " desktop", "Desktop "],
    "tablet": ["Tablet", " TABLET", "tablet "],
    "smart_tv": ["Smart_TV", " smart_tv"],
}
RNG_STREAMS = ("users", "transactions", "defects", "events", "delivery", "fx", "chargebacks")


# ---------------------------------------------------------------------------------------------
# time window


@dataclass(frozen=True)
class Window:
    """The simulated period as epoch seconds (UTC); `cutoff` is the end of the day `as_of`."""

    start: int
    end: int
    cutoff: int
    launch: int
    first_signup: int

    @property
    def has_loyalty(self) -> bool:
        """Whether the `loyalty_tier` column exists yet at the cutoff."""
        return self.cutoff > self.launch


def epoch(day: date) -> int:
    """Epoch seconds of midnight UTC at the start of `day`."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def to_date(seconds: int) -> date:
    """The UTC date holding the instant `seconds`."""
    return datetime.fromtimestamp(seconds, UTC).date()


# by default the sources are written this long after the last transaction: chargebacks arrive late
LABEL_TAIL_DAYS = 90


def make_window(start: date, end: date, as_of: date) -> Window:
    """The window [start, end] (whole days), the as-of cutoff and the loyalty launch."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    days = (end - start).days + 1
    launch_day = start + timedelta(days=int(days * LOYALTY_LAUNCH_FRACTION))
    end_s = epoch(end) + DAY
    cutoff = epoch(as_of) + DAY
    return Window(epoch(start), end_s, cutoff, epoch(launch_day), epoch(start) - 365 * DAY)


# ---------------------------------------------------------------------------------------------
# text helpers


def timestamps_text(seconds: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DD HH:MM:SS' (UTC) for each epoch second, as an object array."""
    text = pc.cast(pa.array(seconds, pa.timestamp("s")), pa.string())
    return np.array(text.to_pylist(), dtype=object)


@dataclass
class TimestampStyle:
    """How a legacy app wrote each timestamp: 0 plain, 1 ISO 'Z', 2 with an offset, 3 garbage."""

    kind: np.ndarray
    offset_minutes: np.ndarray
    garbage: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int) -> "TimestampStyle":
        """Mostly plain; ~2% ISO with 'Z', ~1% with an explicit offset, ~0.2% unparseable."""
        kind = assign_rare(rng, n, [0.02, 0.01, 0.002])
        return cls(kind, rng.choice(OFFSET_MINUTES, n), rng.integers(0, len(BAD_TIMESTAMPS), n))

    def take(self, rows: np.ndarray) -> "TimestampStyle":
        """The styles of the given rows."""
        return TimestampStyle(self.kind[rows], self.offset_minutes[rows], self.garbage[rows])

    def render(self, seconds: np.ndarray) -> np.ndarray:
        """The text of each timestamp in its style (the same instant, written differently)."""
        text = timestamps_text(seconds)
        iso = self.kind == 1
        text[iso] = [value.replace(" ", "T") + "Z" for value in text[iso]]
        shifted = self.kind == 2
        offsets = self.offset_minutes[shifted]
        local = timestamps_text(seconds[shifted] + offsets * MINUTE)
        text[shifted] = [value.replace(" ", "T") + offset_text(m) for value, m in zip(local, offsets, strict=True)]
        garbage = self.kind == 3
        text[garbage] = BAD_TIMESTAMPS[self.garbage[garbage]]
        return text


def offset_text(minutes: int) -> str:
    """'+02:00' for 120, '-05:00' for -300, '+05:30' for 330."""
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(int(minutes)), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def amounts_text(amounts: np.ndarray) -> list[str]:
    """Amounts the way the legacy app stores them: strings with two decimals."""
    return [f"{value:.2f}" for value in amounts.tolist()]


def messy_case(values: list[str], styles: np.ndarray) -> list[str]:
    """Untrimmed, mixed-case copies of clean text: style 0 keeps the value."""
    out = []
    for value, style in zip(values, styles.tolist(), strict=True):
        if style == 1:
            head, _, tail = value.rpartition(" ")
            value = f"  {head} {tail.upper()} " if head else f" {value.title()}"
        elif style == 2:
            value = value.upper()
        elif style == 3:
            value = f" {value}"
        elif style == 4:
            value = f"{value.title()}  "
        out.append(value)
    return out


def ids_text(prefix: str, ids: np.ndarray, width: int) -> pa.Array:
    """Zero-padded string ids like 'evt_000000123', built in Arrow (64-bit offsets: 50M ids pass 2 GB)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(ids, pa.int64()), pa.large_string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix, pa.large_string()), digits, pa.scalar("", pa.large_string()))


def pick_weighted(rng: np.random.Generator, n: int, shares: list[float]) -> np.ndarray:
    """n category indices drawn with the given shares (normalised)."""
    p = np.asarray(shares, dtype=float)
    return rng.choice(len(p), n, p=p / p.sum())


def assign_rare(rng: np.random.Generator, n: int, rates: list[float]) -> np.ndarray:
    """Disjoint rare categories: 0 for most rows, k for round(rates[k-1] * n) random rows (at least one).

    Exact counts rather than coin flips, so every defect kind shows up even at a small scale.
    """
    counts = [min(n, max(1, round(rate * n))) for rate in rates] if n else [0] * len(rates)
    chosen = rng.permutation(n)[: min(n, sum(counts))]
    kind = np.zeros(n, dtype=np.int64)
    kind[chosen] = np.repeat(np.arange(1, len(rates) + 1), counts)[: len(chosen)]
    return kind


# ---------------------------------------------------------------------------------------------
# users


@dataclass
class Users:
    """Every user of the full history, ordered by signup (user ids grow with signup time)."""

    user_id: np.ndarray
    signup: np.ndarray
    weight: np.ndarray
    usual_usd: np.ndarray
    device: np.ndarray
    currency: np.ndarray
    text: dict[str, np.ndarray]
    tier1: np.ndarray
    tier1_at: np.ndarray
    tier2: np.ndarray
    tier2_at: np.ndarray
    duplicate: np.ndarray


def simulate_users(rng: np.random.Generator, n: int, window: Window) -> Users:
    """Users signing up over [start - 365 days, end], with their attributes and tier history."""
    signup = np.sort(rng.integers(window.first_signup, window.end, n))
    tiers = simulate_tiers(rng, signup, window)
    return Users(
        user_id=np.arange(1, n + 1, dtype=np.int64),
        signup=signup,
        weight=rng.gamma(0.8, 1.0, n) + 0.05,
        usual_usd=np.exp(rng.normal(np.log(45.0), 0.8, n)),
        device=pick_weighted(rng, n, DEVICE_P),
        currency=pick_weighted(rng, n, CURRENCY_P),
        text=user_text(rng, n, signup),
        duplicate=assign_rare(rng, n, [0.003]) == 1,
        **tiers,
    )


def simulate_tiers(rng: np.random.Generator, signup: np.ndarray, window: Window) -> dict[str, np.ndarray]:
    """Tier at launch (~40% of existing users) or at signup after launch; ~5% change once later."""
    n = len(signup)
    before_launch = signup < window.launch
    has_tier = ~before_launch | (rng.random(n) < 0.4)
    tier1 = np.where(has_tier, pick_weighted(rng, n, TIER_P), -1)
    tier1_at = np.where(has_tier, np.maximum(signup, window.launch), NEVER)
    change_p = min(1.0, 0.05 * n / max(1, int(has_tier.sum())))
    changes = has_tier & (rng.random(n) < change_p)
    span = np.maximum(window.end - tier1_at, 2)
    tier2_at = np.where(changes, tier1_at + 1 + (rng.random(n) * (span - 1)).astype(np.int64), NEVER)
    tier2 = np.where(changes, (tier1 + rng.integers(1, 4, n)) % 4, -1)
    return {"tier1": tier1, "tier1_at": tier1_at, "tier2": tier2, "tier2_at": tier2_at}


def user_text(rng: np.random.Generator, n: int, signup: np.ndarray) -> dict[str, np.ndarray]:
    """name, email, age, country and signup_at as the app stores them, defects included."""
    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(0, len(FIRST_NAMES), n)]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(0, len(LAST_NAMES), n)]
    domain = np.array(EMAIL_DOMAINS, dtype=object)[rng.integers(0, len(EMAIL_DOMAINS), n)]
    names = [f"{f} {la}" for f, la in zip(first, last, strict=True)]
    emails = [f"{f}.{la}{i}@{d}".lower() for i, (f, la, d) in enumerate(zip(first, last, domain, strict=True), 1)]
    text_styles = pick_weighted(rng, n, [0.7, 0.1, 0.08, 0.07, 0.05])
    email_styles = pick_weighted(rng, n, [0.8, 0.08, 0.04, 0.05, 0.03])
    return {
        "name": np.array(messy_case(names, text_styles), dtype=object),
        "email": np.array(messy_case(emails, email_styles), dtype=object),
        "age": user_ages(rng, n),
        "country": user_countries(rng, n),
        "signup_at": TimestampStyle.draw(rng, n).render(signup),
    }


def user_ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ages 18-90; ~5% null, ~1% impossible (-3, 150, 999)."""
    ages = np.clip(rng.normal(38, 13, n), 18, 90).astype(np.int64).astype(object)
    kind = assign_rare(rng, n, [0.05, 0.01])
    ages[kind == 1] = None
    bad = kind == 2
    ages[bad] = rng.choice(BAD_AGES, int(bad.sum())).tolist()
    return ages


def user_countries(rng: np.random.Generator, n: int) -> np.ndarray:
    """Country text: US/UK/CA/AU in assorted spellings, ~10% other codes, ~0.5% unknown or null."""
    group = pick_weighted(rng, n, [share for _, share in COUNTRIES[:-1]])
    group[assign_rare(rng, n, [COUNTRIES[-1][1]]) == 1] = len(COUNTRIES) - 1
    common = rng.random(n) < 0.7  # the first spelling of a group is the common one
    variant = np.where(common, 0, rng.integers(0, 1_000, n))
    out = np.empty(n, dtype=object)
    for index, (variants, _) in enumerate(COUNTRIES):
        members = group == index
        out[members] = np.array(variants, dtype=object)[variant[members] % len(variants)]
    return out


# ---------------------------------------------------------------------------------------------
# transactions


@dataclass
class Transactions:
    """Every transaction of the full history, ordered by created_at (= transaction_id order)."""

    transaction_id: np.ndarray
    user_index: np.ndarray
    created: np.ndarray
    device: np.ndarray
    currency: np.ndarray
    amount: np.ndarray
    is_fraud: np.ndarray
    first_write: np.ndarray
    settled: np.ndarray
    settled_status: np.ndarray
    refunded: np.ndarray


def simulate_transactions(
    rng: np.random.Generator, scale: int, users: Users, window: Window, fx_daily: np.ndarray
) -> Transactions:
    """`scale` transactions: a diurnal base load plus bursts, fraud, amounts and status changes."""
    created, user_index, burst_role = transaction_times_and_users(rng, scale, users, window)
    order = np.lexsort((user_index, created))
    created, user_index, burst_role = created[order], user_index[order], burst_role[order]
    n = scale
    device = np.where(rng.random(n) < 0.8, users.device[user_index], pick_weighted(rng, n, DEVICE_P))
    currency = np.where(rng.random(n) < 0.9, users.currency[user_index], pick_weighted(rng, n, CURRENCY_P))
    is_fraud = draw_fraud(rng, created, users.signup[user_index], burst_role, device)
    amount_usd = users.usual_usd[user_index] * np.exp(rng.normal(0.0, 0.45, n))
    amount_usd[is_fraud] *= np.exp(rng.normal(np.log(4.0), 0.5, int(is_fraud.sum())))
    day = np.clip((created - window.start) // DAY + 10, 0, fx_daily.shape[0] - 1)
    amount = np.maximum(np.round(amount_usd / fx_daily[day, currency], 2), 0.5)
    return Transactions(
        transaction_id=np.arange(1, n + 1, dtype=np.int64),
        user_index=user_index,
        created=created,
        device=device,
        currency=currency,
        amount=amount,
        is_fraud=is_fraud,
        **status_history(rng, created),
    )


def transaction_times_and_users(
    rng: np.random.Generator, scale: int, users: Users, window: Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Creation times, users and burst role (0 none, 1 first of a burst, 2 follow-up in the burst)."""
    n_bursts = int(scale * 0.015)
    follow_counts = rng.integers(2, 5, n_bursts)
    n_base = scale - int(follow_counts.sum())
    days = rng.integers(0, (window.end - window.start) // DAY, n_base)
    hours = rng.choice(24, n_base, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    base_t = window.start + days * DAY + hours * HOUR + rng.integers(0, HOUR, n_base)
    base_user = users_active_at(rng, base_t, users)
    seeds = rng.choice(n_base, n_bursts, replace=False)
    seed_of_follow = np.repeat(seeds, follow_counts)
    # follow-ups 1-14 minutes apart: a whole burst fits in one hour
    gaps = rng.integers(MINUTE, 14 * MINUTE, len(seed_of_follow))
    follow_t = np.minimum(base_t[seed_of_follow] + cumsum_within(gaps, follow_counts), window.end - 1)
    role = np.zeros(n_base, dtype=np.int8)
    role[seeds] = 1
    created = np.concatenate([base_t, follow_t])
    user_index = np.concatenate([base_user, base_user[seed_of_follow]])
    return created, user_index, np.concatenate([role, np.full(len(follow_t), 2, dtype=np.int8)])


def users_active_at(rng: np.random.Generator, times: np.ndarray, users: Users) -> np.ndarray:
    """For each time, a user who had signed up by then, chosen by activity weight."""
    cumulative = np.cumsum(users.weight)
    eligible = np.maximum(np.searchsorted(users.signup, times, side="right"), 1)
    target = rng.random(len(times)) * cumulative[eligible - 1]
    return np.minimum(np.searchsorted(cumulative, target, side="right"), eligible - 1)


def draw_fraud(
    rng: np.random.Generator,
    created: np.ndarray,
    signup: np.ndarray,
    burst_role: np.ndarray,
    device: np.ndarray,
) -> np.ndarray:
    """~1.5% fraud, far likelier at night, on new accounts, in bursts and on mobile."""
    night = ((created % DAY) // HOUR) < 6
    new_account = (created - signup) < 30 * DAY
    score = (
        2.0 * night + 1.8 * new_account + 2.6 * (burst_role == 2) + 0.8 * (burst_role == 1) + 1.0 * (device == MOBILE)
    )
    bias = calibrate_bias(score, FRAUD_RATE)
    return rng.random(len(score)) < 1.0 / (1.0 + np.exp(-(bias + score)))


def calibrate_bias(score: np.ndarray, rate: float) -> float:
    """The intercept that makes the mean fraud probability equal `rate` (bisection).

    A score takes a few dozen values: the mean is weighted over those, not over every row.
    """
    values, counts = np.unique(score, return_counts=True)
    low, high = -20.0, 5.0
    for _ in range(50):
        middle = (low + high) / 2
        if np.dot(counts, 1.0 / (1.0 + np.exp(-(middle + values)))) / len(score) > rate:
            high = middle
        else:
            low = middle
    return (low + high) / 2


def status_history(rng: np.random.Generator, created: np.ndarray) -> dict[str, np.ndarray]:
    """First write (2% arrive 1-72 h late), then ~70% completed, ~5% failed, ~2% completed+refunded."""
    n = len(created)
    late = rng.random(n) < 0.02
    first_write = created + np.where(late, rng.integers(HOUR, 72 * HOUR, n), 0)
    outcome = pick_weighted(rng, n, [0.23, 0.70, 0.05, 0.02])  # pending, completed, failed, refunded
    # minutes to days, log-uniform
    delay = np.exp(rng.uniform(np.log(MINUTE), np.log(3 * DAY), n)).astype(np.int64)
    settled = np.where(outcome == 0, NEVER, first_write + delay)
    settled_status = np.where(outcome == 2, 2, 1)
    refunded = np.where(outcome == 3, settled + rng.integers(DAY, 20 * DAY, n), NEVER)
    return {
        "first_write": first_write,
        "settled": settled,
        "settled_status": settled_status,
        "refunded": refunded,
    }


# ---------------------------------------------------------------------------------------------
# FX rates


def simulate_fx(rng: np.random.Generator, window: Window) -> tuple[list[date], np.ndarray, np.ndarray]:
    """Business-day random walks from start - 10 days to end, and a rate for every calendar day.

    Returns the business days, their rates (days x currencies) and the daily rates (calendar days
    from start - 10 days, each the latest business day's rate) used to price transactions.
    """
    first = to_date(window.start) - timedelta(days=10)
    calendar = [first + timedelta(days=i) for i in range((window.end - window.start) // DAY + 10)]
    is_business = np.array([day.weekday() < 5 for day in calendar])
    steps = rng.normal(0.0, 0.0025, (int(is_business.sum()), len(CURRENCIES)))
    steps[:, 0] = 0.0
    rates = np.round(BASE_RATES * np.exp(np.cumsum(steps, axis=0)), 6)
    latest = np.maximum(np.cumsum(is_business) - 1, 0)
    business_days = [day for day, keep in zip(calendar, is_business, strict=True) if keep]
    return business_days, rates, rates[latest]


def fx_table(days: list[date], rates: np.ndarray, window: Window) -> pa.Table:
    """FX rows published by the end of the as-of day, ordered by date and currency."""
    last = to_date(window.cutoff - DAY)
    keep = [i for i, day in enumerate(days) if day <= last]
    order = np.argsort(CURRENCIES.astype(str))
    return pa.table(
        {
            "date": pa.array(np.repeat([days[i] for i in keep], len(CURRENCIES)).tolist(), pa.date32()),
            "currency": pa.array(np.tile(CURRENCIES[order], len(keep)).tolist(), pa.string()),
            "rate_to_usd": pa.array(rates[keep][:, order].reshape(-1), pa.float64()),
        }
    )


# ---------------------------------------------------------------------------------------------
# the app database as of the cutoff


@dataclass
class TransactionDefects:
    """Which rows the legacy app damaged, drawn once for the full history."""

    duplicate: np.ndarray
    unknown_user: np.ndarray
    unknown_user_id: np.ndarray
    amount_kind: np.ndarray
    outlier_factor: np.ndarray
    non_numeric: np.ndarray
    unknown_currency: np.ndarray
    device_kind: np.ndarray
    created_style: TimestampStyle


def draw_transaction_defects(rng: np.random.Generator, n: int, n_users: int) -> TransactionDefects:
    """Duplicates 0.5%, unknown users 0.3%, bad amounts ~0.7%, unknown currency 0.2%, device defects."""
    return TransactionDefects(
        duplicate=assign_rare(rng, n, [0.005]) == 1,
        unknown_user=assign_rare(rng, n, [0.003]) == 1,
        unknown_user_id=n_users + rng.integers(1_000_000, 2_000_000, n),
        # 0 fine, 1 negative (0.3%), 2 non-numeric (0.2%), 3 outlier x50-200 (0.2%)
        amount_kind=assign_rare(rng, n, [0.003, 0.002, 0.002]).astype(np.int8),
        outlier_factor=rng.uniform(50, 200, n),
        non_numeric=rng.integers(0, len(NON_NUMERIC_AMOUNTS) + 1, n).astype(np.int8),
        unknown_currency=np.where(
            assign_rare(rng, n, [0.002]) == 1, rng.integers(0, len(UNKNOWN_CURRENCIES), n), -1
        ).astype(np.int8),
        # 0 clean, 1 null (1%), 2 untrimmed / mixed case (6%)
        device_kind=assign_rare(rng, n, [0.01, 0.06]).astype(np.int8),
        created_style=TimestampStyle.draw(rng, n),
    )


# rows are rendered and inserted this many at a time, so memory does not grow with the scale
CHUNK_ROWS = 100_000


def inserted_between(written: np.ndarray, duplicate: np.ndarray, low: int, high: int, origin: int) -> np.ndarray:
    """The rows first written in [low, high), a duplicated row twice, in the order the app inserted them:
    day by day (days counted from `origin`), each day's rows by id, then that day's exact copies.

    A folder grown one day at a time appends exactly these rows, so it matches a fresh one row for row.
    """
    rows = np.flatnonzero((written >= low) & (written < high))
    copies = rows[duplicate[rows]]
    rows = np.concatenate([rows, copies])
    copy = np.concatenate([np.zeros(len(rows) - len(copies), dtype=np.int8), np.ones(len(copies), dtype=np.int8)])
    return rows[np.lexsort((copy, (written[rows] - origin) // DAY))]


def changed_between(times: list[np.ndarray], low: int, high: int) -> np.ndarray:
    """Whether any of the given event times of a row falls in [low, high)."""
    changed = np.zeros(len(times[0]), dtype=bool)
    for values in times:
        changed |= (values >= low) & (values < high)
    return changed


def chunks(rows: np.ndarray) -> Iterator[np.ndarray]:
    """`rows` in slices of at most CHUNK_ROWS."""
    for low in range(0, len(rows), CHUNK_ROWS):
        yield rows[low : low + CHUNK_ROWS]


def transaction_state(txns: Transactions, rows: np.ndarray, cutoff: int) -> tuple[list[str], list[str]]:
    """Status and updated_at text of the given rows at the cutoff (status changes after insert)."""
    settled = txns.settled[rows] < cutoff
    refunded = txns.refunded[rows] < cutoff
    status = np.where(refunded, 3, np.where(settled, txns.settled_status[rows], 0))
    updated = np.where(refunded, txns.refunded[rows], np.where(settled, txns.settled[rows], txns.first_write[rows]))
    return STATUSES[status].tolist(), timestamps_text(updated).tolist()


def transaction_rows(
    txns: Transactions, users: Users, defects: TransactionDefects, rows: np.ndarray, cutoff: int
) -> list[tuple]:
    """The `transactions` rows of the given row indices, each as its latest version at the cutoff."""
    user_id = np.where(defects.unknown_user[rows], defects.unknown_user_id[rows], users.user_id[txns.user_index[rows]])
    currency = CURRENCIES[txns.currency[rows]]
    odd_currency = defects.unknown_currency[rows]
    currency[odd_currency >= 0] = UNKNOWN_CURRENCIES[odd_currency[odd_currency >= 0]]
    status, updated = transaction_state(txns, rows, cutoff)
    columns = [
        txns.transaction_id[rows].tolist(),
        user_id.tolist(),
        transaction_amounts(txns.amount[rows], defects, rows),
        currency.tolist(),
        status,
        transaction_devices(txns.device[rows], defects.device_kind[rows], rows),
        defects.created_style.take(rows).render(txns.created[rows]).tolist(),
        updated,
    ]
    return list(zip(*columns, strict=True))


def transaction_amounts(amount: np.ndarray, defects: TransactionDefects, rows: np.ndarray) -> list[str]:
    """Amount text with negative, non-numeric ('N/A', '12,50') and outlier values mixed in."""
    kind = defects.amount_kind[rows]
    values = np.where(
        kind == 1, -amount, np.where(kind == 3, np.round(amount * defects.outlier_factor[rows], 2), amount)
    )
    text = amounts_text(values)
    for i in np.flatnonzero(kind == 2).tolist():
        choice = int(defects.non_numeric[rows[i]])
        text[i] = text[i].replace(".", ",") if choice == len(NON_NUMERIC_AMOUNTS) else NON_NUMERIC_AMOUNTS[choice]
    return text


def transaction_devices(device: np.ndarray, kind: np.ndarray, rows: np.ndarray) -> list[str | None]:
    """Device text: clean lower case, ~1% null, ~6% untrimmed or mixed case (' Mobile', 'DESKTOP')."""
    text: list[str | None] = DEVICES[device].tolist()
    for i in np.flatnonzero(kind != 0).tolist():
        value = text[i]
        assert value is not None
        variants = MESSY_DEVICES[value]
        text[i] = None if kind[i] == 1 else variants[int(rows[i]) % len(variants)]
    return text


USER_COLUMNS = ["user_id", "name", "email", "age", "country", "signup_at", "updated_at"]


def user_columns(window: Window) -> list[str]:
    """The `users` columns at the cutoff: `loyalty_tier` exists once the programme launched."""
    return USER_COLUMNS + ["loyalty_tier"] if window.has_loyalty else USER_COLUMNS


def user_state(users: Users, rows: np.ndarray, window: Window) -> list[list]:
    """updated_at (and loyalty_tier once it exists) of the given rows at the cutoff."""
    tier2_now = users.tier2_at[rows] < window.cutoff
    tier1_now = users.tier1_at[rows] < window.cutoff
    updated = np.where(tier2_now, users.tier2_at[rows], np.where(tier1_now, users.tier1_at[rows], users.signup[rows]))
    state = [timestamps_text(updated).tolist()]
    if window.has_loyalty:
        tier = np.where(tier2_now, users.tier2[rows], np.where(tier1_now, users.tier1[rows], -1))
        state.append(np.append(TIERS, None)[tier].tolist())  # index -1: no tier
    return state


def user_rows(users: Users, rows: np.ndarray, window: Window) -> list[tuple]:
    """The `users` rows of the given row indices (current versions; exact duplicates included)."""
    values = [users.user_id[rows].tolist()]
    values += [users.text[name][rows].tolist() for name in ("name", "email", "age", "country", "signup_at")]
    values += user_state(users, rows, window)
    return list(zip(*values, strict=True))


def user_ddl(columns: list[str]) -> str:
    """CREATE TABLE for `users`; `loyalty_tier` last, as ALTER TABLE ... ADD COLUMN leaves it."""
    types = {"user_id": "INTEGER", "age": "INTEGER"}
    return f"CREATE TABLE users ({', '.join(name + ' ' + types.get(name, 'TEXT') for name in columns)})"


TRANSACTIONS_DDL = (
    "CREATE TABLE transactions (transaction_id INTEGER, user_id INTEGER, amount TEXT, currency TEXT, "
    "status TEXT, device_type TEXT, created_at TEXT, updated_at TEXT)"
)


@dataclass
class History:
    """The simulated app history the database is written from."""

    users: Users
    txns: Transactions
    defects: TransactionDefects
    window: Window


def insert_rows(connection: sqlite3.Connection, history: History, since: int) -> None:
    """Append the users and transactions first written in [since, cutoff), in insertion order."""
    users, txns, window = history.users, history.txns, history.window
    columns = user_columns(window)
    insert_user = f"INSERT INTO users VALUES ({', '.join('?' * len(columns))})"
    for rows in chunks(inserted_between(users.signup, users.duplicate, since, window.cutoff, window.first_signup)):
        connection.executemany(insert_user, user_rows(users, rows, window))
    new = inserted_between(txns.first_write, history.defects.duplicate, since, window.cutoff, window.start)
    for rows in chunks(new):
        rendered = transaction_rows(txns, users, history.defects, rows, window.cutoff)
        connection.executemany("INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rendered)


def write_app_database(path: Path, history: History) -> None:
    """Write a fresh SQLite file with both tables (no keys: duplicates are possible)."""
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute(user_ddl(user_columns(history.window)))
        connection.execute(TRANSACTIONS_DDL)
        insert_rows(connection, history, np.iinfo(np.int64).min)
        connection.commit()
    finally:
        connection.close()


def update_app_database(path: Path, history: History, since: int) -> None:
    """Bring a database written as of `since` to the cutoff: what the app changed in [since, cutoff).

    Rows written before `since` whose state changed (a status, a loyalty tier) are updated in
    place, new rows appended in the order a fresh file holds them, `loyalty_tier` added at launch.
    """
    users, txns, window = history.users, history.txns, history.window
    connection = sqlite3.connect(path)
    try:
        existing = [row[1] for row in connection.execute("PRAGMA table_info(users)")]
        added = window.has_loyalty and "loyalty_tier" not in existing
        if added:
            connection.execute("ALTER TABLE users ADD COLUMN loyalty_tier TEXT")
        changed = changed_between([users.tier1_at, users.tier2_at], since, window.cutoff)
        if added:
            changed |= users.tier1_at < window.cutoff
        old_users = np.flatnonzero(changed & (users.signup < since))
        state = ["updated_at", "loyalty_tier"][: 2 if window.has_loyalty else 1]
        update_in_place(
            connection, "users", "user_id", users.user_id[old_users], state, user_state(users, old_users, window)
        )
        changed = changed_between([txns.settled, txns.refunded], since, window.cutoff)
        old_txns = np.flatnonzero(changed & (txns.first_write < since))
        values = list(transaction_state(txns, old_txns, window.cutoff))
        update_in_place(
            connection,
            "transactions",
            "transaction_id",
            txns.transaction_id[old_txns],
            ["status", "updated_at"],
            values,
        )
        insert_rows(connection, history, since)
        connection.commit()
    finally:
        connection.close()


def update_in_place(
    connection: sqlite3.Connection, table: str, key: str, ids: np.ndarray, columns: list[str], values: list[list]
) -> None:
    """Set `columns` of every row of `table` whose `key` is in `ids` (duplicates included): one pass."""
    connection.execute(f"CREATE TEMP TABLE changes ({key} INTEGER PRIMARY KEY, {', '.join(columns)})")
    rows = list(zip(ids.tolist(), *values, strict=True))
    connection.executemany(f"INSERT INTO changes VALUES ({', '.join('?' * (len(columns) + 1))})", rows)
    assignments = ", ".join(f"{column} = changes.{column}" for column in columns)
    connection.execute(f"UPDATE {table} SET {assignments} FROM changes WHERE {table}.{key} = changes.{key}")
    connection.execute("DROP TABLE changes")


# ---------------------------------------------------------------------------------------------
# events


@cache
def property_dictionary() -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Every JSON `properties` value, and each event type's offset and count in that list."""
    by_type = [
        [{"page": page} for page in ["/home", "/deals", "/account", "/cart", "/help"]]
        + [{"page": f"/products/{k}"} for k in range(40)],
        [{"query": word} for word in "shoes phone laptop jacket coffee headphones gift toys lamp books".split()],
        [{"sku": f"SKU-{k:04d}", "quantity": q} for k in range(60) for q in (1, 2)],
        [{"step": step, "payment_method": m} for step in ("payment", "confirm") for m in ("card", "wallet")],
        [{"method": method} for method in ("password", "sso", "otp")],
    ]
    counts = np.array([len(values) for values in by_type])
    offsets = np.cumsum(counts) - counts
    texts = [json.dumps(value) for values in by_type for value in values]
    return pa.array(texts, pa.string()), offsets, counts


def cumsum_within(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Running sums of `values` restarting at each group of the given consecutive sizes."""
    total = np.cumsum(values)
    starts = np.cumsum(sizes) - sizes
    before = total[starts] - values[starts] if len(values) else np.zeros(0, dtype=values.dtype)
    return total - np.repeat(before, sizes)


def expand(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sessions of the given sizes: each event's session index and position in it."""
    session = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    starts = np.cumsum(sizes) - sizes
    return session, (np.arange(int(sizes.sum())) - starts[session]).astype(np.int32)


@dataclass
class Sessions:
    """Events of consecutive sessions (session indices ascending), with each session's start."""

    session: np.ndarray  # int32, per event
    user_index: np.ndarray  # int32, per event
    device: np.ndarray  # int8, per event
    event_type: np.ndarray  # int8, per event
    occurred_us: np.ndarray  # int64, per event
    start_us: np.ndarray  # int64, per session


@dataclass
class Purchases:
    """What the clickstream needs of each transaction: when, by whom, on which device."""

    created: np.ndarray
    user_index: np.ndarray
    device: np.ndarray


def transaction_sessions(rng: np.random.Generator, txns: Purchases) -> Sessions:
    """Sessions in the 30 minutes before ~75% of transactions, ending with a checkout."""
    has_session = np.flatnonzero(rng.random(len(txns.created)) < 0.75)
    sizes = 1 + rng.poisson(2.5, len(has_session))
    session, _ = expand(sizes)
    txn = has_session[session].astype(np.int32)
    del has_session
    occurred = txns.created[txn] * 1_000_000
    occurred -= rng.integers(10_000_000, 1_800_000_000, len(session))
    # sessions are consecutive: sort each one's events by time (what lexsort((occurred, session)) gives)
    order = np.lexsort((occurred, session))
    occurred, txn = occurred[order], txn[order]
    del order
    starts = np.cumsum(sizes) - sizes
    position = np.arange(len(session)) - starts[session]
    last = position == sizes[session] - 1
    middle = pick_weighted(rng, len(session), [0.5, 0.3, 0.2])  # page_view, search, add_to_cart
    first = np.where(draw_below(rng, len(session), 0.4), np.int8(LOGIN), np.int8(PAGE_VIEW))
    event_type = np.where(last, CHECKOUT, np.where(position == 0, first, middle)).astype(np.int8)
    return Sessions(
        session=session,
        user_index=txns.user_index[txn].astype(np.int32),
        device=txns.device[txn].astype(np.int8),
        event_type=event_type,
        occurred_us=occurred,
        start_us=occurred[starts],
    )


def browsing_sessions(rng: np.random.Generator, n: int, users: Users, window: Window) -> Sessions:
    """n browsing sessions of users after their signup: page views, searches, some carts."""
    user = rng.choice(len(users.weight), n, p=users.weight / users.weight.sum())
    earliest = np.maximum(users.signup[user], window.start)
    span = np.maximum(window.end - HOUR - earliest, 1)
    start = earliest + (rng.random(n) * span).astype(np.int64)
    sizes = 1 + rng.poisson(3.0, n)
    session, position = expand(sizes)
    gaps = (rng.exponential(90.0, len(session)) * 1_000_000).astype(np.int64)
    gaps[position == 0] = 0
    occurred = start[session] * 1_000_000 + cumsum_within(gaps, sizes)
    del gaps
    first = np.where(draw_below(rng, len(session), 0.25), np.int8(LOGIN), np.int8(PAGE_VIEW))
    later = pick_weighted(rng, len(session), [0.6, 0.3, 0.1])
    event_type = np.where(position == 0, first, later).astype(np.int8)
    del first, later, position
    device = np.where(rng.random(n) < 0.85, users.device[user], pick_weighted(rng, n, DEVICE_P))
    return Sessions(
        session=session,
        user_index=user[session].astype(np.int32),
        device=device[session].astype(np.int8),
        event_type=event_type,
        occurred_us=occurred,
        start_us=start * 1_000_000,
    )


@dataclass
class Events:
    """Every event by number (event_id - 1), and the delivered rows (re-deliveries included) by batch."""

    user_index: np.ndarray
    session_id: np.ndarray
    event_type: np.ndarray
    device: np.ndarray
    occurred_us: np.ndarray
    properties: np.ndarray
    row: np.ndarray  # the event of each delivered row, ordered by batch
    batch: np.ndarray  # the delivery batch of each delivered row (6-hour windows from the start)


def simulate_events(
    rng: np.random.Generator,
    delivery_rng: np.random.Generator,
    txns: Purchases,
    users: Users,
    window: Window,
) -> Events:
    """~5 events per transaction: pre-transaction sessions plus browsing, then at-least-once delivery.

    Numbered in time order (ties by session); kept as narrow numbers, rendered batch by batch.
    """
    parts = [
        transaction_sessions(rng, txns),
        browsing_sessions(rng, int(0.6 * len(txns.created)), users, window),
    ]
    parts[1].session += len(parts[0].start_us)
    start_us = np.concatenate([part.start_us for part in parts])
    keep = np.concatenate([part.occurred_us for part in parts]) >= window.start * 1_000_000
    merged: dict[str, np.ndarray] = {}
    for name in ("occurred_us", "session", "user_index", "device", "event_type"):
        merged[name] = np.concatenate([getattr(part, name) for part in parts])[keep]
        for part in parts:
            setattr(part, name, None)  # free each part's column once merged: peak memory
    del parts, keep
    # sessions are consecutive and ascending, so a stable sort on time breaks ties by session
    order = np.argsort(merged["occurred_us"], kind="stable")
    for name, values in merged.items():
        merged[name] = values[order]
    del order
    session_id = session_numbers(merged.pop("session"), start_us)
    properties = draw_properties(rng, merged["event_type"])
    row, batch = deliver(delivery_rng, merged["occurred_us"], window)
    return Events(session_id=session_id, properties=properties, row=row, batch=batch, **merged)


def session_numbers(session: np.ndarray, start_us: np.ndarray) -> np.ndarray:
    """Numbers (from 1) of the sessions that have events, in order of session start, then index."""
    present = np.zeros(len(start_us), dtype=bool)
    present[session] = True
    indices = np.flatnonzero(present)
    number = np.zeros(len(start_us), dtype=np.int32)
    number[indices[np.lexsort((indices, start_us[indices]))]] = np.arange(1, len(indices) + 1, dtype=np.int32)
    return number[session]


# per-event random numbers are drawn this many at a time (numpy's generators give the same stream
# in chunks as in one call), so no temporary array is as long as the event stream
DRAW_CHUNK = 1_000_000


def spans(n: int) -> Iterator[slice]:
    """[0, n) in consecutive slices of at most DRAW_CHUNK."""
    for low in range(0, n, DRAW_CHUNK):
        yield slice(low, min(n, low + DRAW_CHUNK))


def draw_properties(rng: np.random.Generator, event_type: np.ndarray) -> np.ndarray:
    """An index into the property dictionary, of the right event type, for each event."""
    _, offsets, counts = property_dictionary()
    properties = np.empty(len(event_type), dtype=np.int16)
    for span in spans(len(event_type)):
        kind = event_type[span]
        properties[span] = offsets[kind] + (rng.random(len(kind)) * counts[kind]).astype(np.int64)
    return properties


def draw_below(rng: np.random.Generator, n: int, probability: float) -> np.ndarray:
    """n coin flips with the given probability: rng.random(n) < probability, drawn in chunks."""
    flips = np.empty(n, dtype=bool)
    for span in spans(n):
        flips[span] = rng.random(span.stop - span.start) < probability
    return flips


def deliver(rng: np.random.Generator, occurred_us: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """6-hour delivery batches: ~1% late (up to 24 h), ~1% delivered twice (the copy in the same
    batch or the next). Returns the event of each delivered row and its batch, ordered by batch,
    event, copy, keeping the batches that closed by the end of the window."""
    n = len(occurred_us)
    late = draw_below(rng, n, 0.01)
    batch = np.empty(n, dtype=np.int32)
    for span in spans(n):
        delay = rng.integers(BATCH_SECONDS, 24 * HOUR, span.stop - span.start)
        seconds = occurred_us[span] // 1_000_000
        seconds[late[span]] += delay[late[span]]
        batch[span] = (seconds - window.start) // BATCH_SECONDS
    del late
    again = draw_below(rng, n, 0.01)
    copy_shift = rng.integers(0, 2, int(again.sum())).astype(np.int32)
    # each event, then right after it its second delivery: a stable sort on the batch alone
    # orders the rows by (batch, event, copy)
    row = np.repeat(np.arange(n, dtype=np.int32), 1 + again)
    is_copy = np.zeros(len(row), dtype=bool)
    is_copy[np.flatnonzero(again) + np.arange(1, len(copy_shift) + 1)] = True
    del again
    batch = batch[row]
    batch[is_copy] += copy_shift
    del is_copy, copy_shift
    order = np.argsort(batch, kind="stable")
    row, batch = row[order], batch[order]
    del order
    in_window = window.start + (batch.astype(np.int64) + 1) * BATCH_SECONDS <= window.end
    return row[in_window], batch[in_window]


# the micro-batch files' schema
FILE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int64()),
        ("session_id", pa.string()),
        ("event_type", pa.string()),
        ("device_type", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("properties", pa.string()),
    ]
)


def batch_table(events: Events, rows: np.ndarray) -> pa.Table:
    """The delivered rows of one batch as the micro-batch file holds them."""
    properties, _, _ = property_dictionary()
    return pa.table(
        {
            "event_id": ids_text("evt_", rows.astype(np.int64) + 1, 9),
            "user_id": pa.array(events.user_index[rows].astype(np.int64) + 1, pa.int64()),
            "session_id": ids_text("ses_", events.session_id[rows], 9),
            "event_type": pa.array(EVENT_TYPES.tolist(), pa.string()).take(events.event_type[rows]),
            "device_type": pa.array(DEVICES.tolist(), pa.string()).take(events.device[rows]),
            "occurred_at": pa.array(events.occurred_us[rows], pa.timestamp("us", tz="UTC")),
            "properties": properties.take(pa.array(events.properties[rows])),
        }
    ).cast(FILE_SCHEMA)


def write_events(events: Events, out: Path, window: Window, reuse: bool) -> tuple[int, set[Path]]:
    """One Parquet file per delivery window that closed by the cutoff; mtime = the window's end.

    A closed window's file never changes: with `reuse`, a file already there with that mtime is kept.
    """
    last_batch = max(0, (window.cutoff - window.start) // BATCH_SECONDS)  # batches [0, last_batch) closed
    bounds = np.searchsorted(events.batch, np.arange(last_batch + 1))
    written: set[Path] = set()
    for batch in range(last_batch):
        low, high = int(bounds[batch]), int(bounds[batch + 1])
        if low == high:
            continue
        begins = window.start + batch * BATCH_SECONDS
        stamp = datetime.fromtimestamp(begins, UTC)
        path = out / f"date={stamp:%Y-%m-%d}" / f"batch-{stamp:%H}.parquet"
        written.add(path)
        if not (reuse and has_mtime(path, begins + BATCH_SECONDS)):
            write_parquet(batch_table(events, events.row[low:high]), path, begins + BATCH_SECONDS)
    return int(bounds[last_batch]), written


def has_mtime(path: Path, mtime: int) -> bool:
    """Whether `path` is a file this generator wrote with that pinned modification time."""
    return path.is_file() and path.stat().st_mtime_ns == mtime * 1_000_000_000


def write_parquet(table: pa.Table, path: Path, mtime: int) -> None:
    """Write a Parquet file and pin its modification time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    os.utime(path, (mtime, mtime))


# ---------------------------------------------------------------------------------------------
# chargebacks


def simulate_chargebacks(rng: np.random.Generator, txns: Transactions, window: Window) -> tuple[np.ndarray, ...]:
    """(transaction_id, reported_at, reason) of every chargeback reported by the end of the window.

    Fraud is reported 3-90 days after the transaction (~85% within 60 days); ~0.5% of genuine
    transactions are disputed too (noise), ~0.5% of reports are repeated, a few name unknown ids.
    """
    fraud = np.flatnonzero(txns.is_fraud)
    within = rng.random(len(fraud)) < 0.85
    delay = np.where(within, rng.uniform(3, 60, len(fraud)), rng.uniform(60, 90, len(fraud)))
    noise = np.flatnonzero(~txns.is_fraud & (rng.random(len(txns.created)) < 0.005))
    ids = np.concatenate([txns.transaction_id[fraud], txns.transaction_id[noise]])
    reported = np.concatenate(
        [
            txns.created[fraud] + (delay * DAY).astype(np.int64),
            txns.created[noise] + (rng.uniform(3, 90, len(noise)) * DAY).astype(np.int64),
        ]
    )
    reason = np.concatenate(
        [pick_weighted(rng, len(fraud), [0.6, 0.3, 0.1]), pick_weighted(rng, len(noise), [0.1, 0.2, 0.7])]
    )
    repeat = np.flatnonzero(rng.random(len(ids)) < 0.005)
    later = np.where(rng.random(len(repeat)) < 0.5, 0, rng.integers(HOUR, 7 * DAY, len(repeat)))
    n_unknown = max(2, len(ids) // 500)
    unknown_ids = len(txns.created) + rng.integers(1_000_000, 9_000_000, n_unknown)
    ids = np.concatenate([ids, ids[repeat], unknown_ids])
    reported = np.concatenate([reported, reported[repeat] + later, rng.integers(window.start, window.end, n_unknown)])
    reason = np.concatenate([reason, reason[repeat], rng.integers(0, len(REASONS), n_unknown)])
    keep = reported < window.end
    order = np.lexsort((ids[keep], reported[keep]))
    return ids[keep][order], reported[keep][order], reason[keep][order]


def write_chargebacks(
    chargebacks: tuple[np.ndarray, ...], out: Path, window: Window, reuse: bool
) -> tuple[int, set[Path]]:
    """One file per week (Monday) of reports made by the cutoff; formats rotate csv -> jsonl -> parquet.

    The file's mtime is the end of its week, or the cutoff while the week is still running, so a
    file that grows on a later day looks changed to an incremental loader. A week's file is final
    once the week ended: with `reuse`, one already there with that mtime is kept.
    """
    ids, reported, reason = (values[chargebacks[1] < window.cutoff] for values in chargebacks)
    first_monday = window.start - to_date(window.start).weekday() * DAY
    week = (reported - first_monday) // (7 * DAY)
    written: set[Path] = set()
    for value in np.unique(week).tolist():
        rows = week == value
        monday = first_monday + value * 7 * DAY
        number = to_date(monday).isocalendar().week
        extension = ("csv", "jsonl", "parquet")[number % 3]
        path = out / f"reported_date={to_date(monday).isoformat()}" / f"chargebacks.{extension}"
        written.add(path)
        mtime = min(monday + 7 * DAY, window.cutoff)
        if reuse and has_mtime(path, mtime):
            continue
        records = {
            "transaction_id": ids[rows].tolist(),
            "reported_at": timestamps_text(reported[rows]).tolist(),
            "reason": REASONS[reason[rows]].tolist(),
        }
        write_chargeback_file(path, records, mtime)
    return len(ids), written


def write_chargeback_file(path: Path, records: dict[str, list], mtime: int) -> None:
    """Write one chargeback file in the format its extension names; pin its mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(records)
    rows = list(zip(*records.values(), strict=True))
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        lines = [json.dumps(dict(zip(columns, row, strict=True))) for row in rows]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    else:
        schema = pa.schema([("transaction_id", pa.int64()), ("reported_at", pa.string()), ("reason", pa.string())])
        pq.write_table(pa.table(records, schema=schema), path)
    os.utime(path, (mtime, mtime))


# ---------------------------------------------------------------------------------------------
# orchestration

# what the folder was last generated with; a later run with the same settings reuses its files
SETTINGS_FILE = ".generate.json"


def remove_stale(root: Path, keep: set[Path]) -> None:
    """Delete files under `root` this run did not write (left by a run with a later as_of)."""
    if not root.exists():
        return
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def previous_as_of(out: Path, settings: dict[str, object]) -> date | None:
    """The as-of day of the folder's last complete generation with the same settings, if any.

    The settings file is removed when a run starts and written when it ends: a run that did not
    finish leaves none, and the next run starts afresh.
    """
    path = out / SETTINGS_FILE
    try:
        previous = json.loads(path.read_text())
        as_of = date.fromisoformat(previous.pop("as_of"))
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return as_of if previous == settings else None


def generate(
    out: Path,
    seed: int,
    scale: int,
    as_of: date | None = None,
    start: date = date(2026, 1, 1),
    end: date = date(2026, 8, 31),
) -> dict[str, int]:
    """Simulate the full history for [start, end] and write the sources as of the end of `as_of`.

    Into a folder generated before with the same seed, scale and window as of an earlier day, only
    what changed since is written: new event batches, app rows inserted or updated, the FX file,
    the chargeback files of weeks still running. The result equals a fresh generation.
    Returns the number of rows written per table (duplicates included).
    """
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    window = make_window(start, end, as_of or end + timedelta(days=LABEL_TAIL_DAYS))
    settings: dict[str, object] = {"seed": seed, "scale": scale, "start": start.isoformat(), "end": end.isoformat()}
    out.mkdir(parents=True, exist_ok=True)
    previous = previous_as_of(out, settings)
    (out / SETTINGS_FILE).unlink(missing_ok=True)
    rngs = dict(
        zip(
            RNG_STREAMS,
            (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)),
            strict=True,
        )
    )

    users = simulate_users(rngs["users"], max(50, scale // 20), window)
    fx_days, fx_rates, fx_daily = simulate_fx(rngs["fx"], window)
    txns = simulate_transactions(rngs["transactions"], scale, users, window, fx_daily)
    history = History(users, txns, draw_transaction_defects(rngs["defects"], scale, len(users.user_id)), window)

    app = out / "app.sqlite"
    if previous is not None and previous <= to_date(window.cutoff - DAY) and has_mtime(app, epoch(previous) + DAY):
        update_app_database(app, history, epoch(previous) + DAY)
    else:
        write_app_database(app, history)
    os.utime(app, (window.cutoff, window.cutoff))
    counts = {
        "users": int(np.sum((users.signup < window.cutoff) * (1 + users.duplicate))),
        "transactions": int(np.sum((txns.first_write < window.cutoff) * (1 + history.defects.duplicate))),
    }
    del history

    reuse = previous is not None
    chargebacks = simulate_chargebacks(rngs["chargebacks"], txns, window)
    chargeback_dir = out / "bucket" / "chargebacks"
    chargeback_count, chargeback_files = write_chargebacks(chargebacks, chargeback_dir, window, reuse)
    remove_stale(chargeback_dir, chargeback_files)

    rates = fx_table(fx_days, fx_rates, window)
    write_parquet(rates, out / "fx_rates.parquet", window.cutoff)

    purchases = Purchases(txns.created, txns.user_index.astype(np.int32), txns.device.astype(np.int8))
    del txns
    events = simulate_events(rngs["events"], rngs["delivery"], purchases, users, window)
    del purchases
    event_count, event_files = write_events(events, out / "events", window, reuse)
    remove_stale(out / "events", event_files)

    as_of_day = to_date(window.cutoff - DAY)
    (out / SETTINGS_FILE).write_text(json.dumps(settings | {"as_of": as_of_day.isoformat()}) + "\n")
    os.utime(out / SETTINGS_FILE, (window.cutoff, window.cutoff))
    return counts | {"events": event_count, "fx_rates": rates.num_rows, "chargebacks": chargeback_count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=int, default=100_000, help="transactions over the whole window")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        help="YYYY-MM-DD (default: --end + 90 days, so late labels have arrived); a folder generated with the "
        "same seed, scale and window as of an earlier day only gets what changed since",
    )
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2026, 8, 31))
    args = parser.parse_args(argv)
    try:
        counts = generate(args.out, args.seed, args.scale, args.as_of, args.start, args.end)
    except ValueError as error:
        print(f"generate: {error}", file=sys.stderr)
        return 2
    for table, count in counts.items():
        print(f"{table:<14}{count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
