"""The CDNOW purchase history (a real, public data set) as an app database in the raw contract.

CDNOW was an online CD shop. Its purchase log of 23,570 customers who first bought in the first
quarter of 1997, followed until June 1998 (69,659 purchases), is a classic of customer-value
research; the PyPI package `lifetimes` ships it as `lifetimes/datasets/CDNOW_master.txt`:
`customer_id date number_of_cds dollar_value`, e.g. `00002 19970112 5 77.00`.

Nobody here wrote it, and it looks like what users bring: text ids with leading zeros, one
currency, dates only (no time of day, so a customer's purchases of one day share a timestamp),
zero-dollar purchases, repeated lines, no clickstream, no chargebacks, dates before 2000.

This script only renames and reshapes, into the contract's tables and column names:
- `users(user_id, name, email, age, country, signup_at, updated_at)`: one row per customer;
  `signup_at` is the first purchase (the data set's cohort is defined by it); name, email, age
  and country are not in the data set and stay null.
- `transactions(transaction_id, user_id, amount, currency, status, device_type, created_at,
  updated_at)`: one row per line of the file; `transaction_id` is `<customer>-<line number>`
  (text), `currency` is USD, `status` is `completed`, `device_type` is null.

    python -m examples.cdnow.to_contract --out data/cdnow/app.sqlite
"""

import argparse
import importlib.metadata
import sqlite3
import sys
from datetime import date
from pathlib import Path

DATA_FILE = "lifetimes/datasets/CDNOW_master.txt"


def source_file() -> Path:
    """The data file inside the installed `lifetimes` distribution (not imported: only its file is read)."""
    try:
        distribution = importlib.metadata.distribution("lifetimes")
    except importlib.metadata.PackageNotFoundError as error:
        raise SystemExit("the CDNOW data ships in the `lifetimes` package: pip install 'lifetimes==0.11.3'") from error
    path = Path(str(distribution.locate_file(DATA_FILE)))
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the installed lifetimes package")
    return path


def read_purchases(path: Path) -> list[tuple[str, date, str]]:
    """(customer id, purchase date, dollar amount as text) per line, in file order."""
    purchases = []
    with path.open() as lines:
        header = next(lines).split()
        if header != ["customer_id", "date", "number_of_cds", "dollar_value"]:
            raise SystemExit(f"{path}: unexpected header {header}")
        for line in lines:
            if line.strip():
                customer, day, _cds, dollars = line.split()
                purchases.append((customer, date(int(day[:4]), int(day[4:6]), int(day[6:])), dollars))
    return purchases


def write_app_database(purchases: list[tuple[str, date, str]], out: Path) -> tuple[int, int]:
    """Write `users` and `transactions` to a new SQLite file; return (users, transactions)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    first_purchase: dict[str, date] = {}
    for customer, day, _ in purchases:
        first_purchase[customer] = min(day, first_purchase.get(customer, day))
    with sqlite3.connect(out) as connection:
        connection.execute(
            "create table users (user_id text primary key, name text, email text, age integer, country text, "
            "signup_at text, updated_at text)"
        )
        connection.execute(
            "create table transactions (transaction_id text primary key, user_id text, amount text, currency text, "
            "status text, device_type text, created_at text, updated_at text)"
        )
        connection.executemany(
            "insert into users values (?, null, null, null, null, ?, ?)",
            [(customer, f"{day} 00:00:00", f"{day} 00:00:00") for customer, day in sorted(first_purchase.items())],
        )
        connection.executemany(
            "insert into transactions values (?, ?, ?, 'USD', 'completed', null, ?, ?)",
            [
                (f"{customer}-{line:05d}", customer, dollars, f"{day} 00:00:00", f"{day} 00:00:00")
                for line, (customer, day, dollars) in enumerate(purchases, start=1)
            ],
        )
    return len(first_purchase), len(purchases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/cdnow/app.sqlite"), help="the SQLite file to write")
    args = parser.parse_args(argv)
    users, transactions = write_app_database(read_purchases(source_file()), args.out)
    print(f"cdnow: {users:,} users and {transactions:,} transactions written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
