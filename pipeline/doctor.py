"""`pipeline doctor`: check each configured source before a run, through the settings extract reads.

For each source: turned off, demo or your own data; reachable (the app database connects, a bucket
folder exists and lists files, the FX API answers with the token); the app tables and the raw
contract's columns present; on a sample of transactions: ids present, amounts numbers, timestamps
parseable; row counts and the first and last `created_at`; and the currencies of the transactions
that no rate converts (not served by the FX source, not the reporting currency). Each problem is
printed with the setting (and its environment variable) or the data fix.

Exit 0 when a run can produce features (warnings may remain), 1 when it would fail or produce nothing.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import dlt
import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import requests
import sqlalchemy as sa
import yaml

from extract.app_database import APP_TABLES, CONTRACT_COLUMNS, engine_options, parse_url
from extract.contract import is_enabled
from extract.errors import CONFIG_SECTIONS, env_name, setting
from extract.files import SourceSettingError, local_path, require_bucket
from extract.fx_api import RATES_PATH
from extract.load import DEMO_FILES, demo_dir, uses_demo
from pipeline.console import first_line, log
from pipeline.warehouse.dbt_runner import PROJECT_DIR

SAMPLE_ROWS = 1000
FX_PAGES = 5  # pages of the FX API read to learn which currencies it serves
EXIT_OK, EXIT_PROBLEM = 0, 1


@dataclass
class Findings:
    """What the checks found: lines to print, and problems that stop a run (errors) or not (warnings)."""

    lines: list[str] = field(default_factory=list)
    errors: int = 0
    warnings: int = 0
    currencies: dict[str, int] = field(default_factory=dict)  # transactions per currency
    served: set[str] | None = None  # currencies the FX source serves; None when unknown

    def ok(self, text: str) -> None:
        self.lines.append(f"  ok       {text}")

    def info(self, text: str) -> None:
        self.lines.append(f"  -        {text}")

    def warn(self, text: str, fix: str) -> None:
        self.warnings += 1
        self.lines += [f"  WARNING  {text}", f"           fix: {fix}"]

    def error(self, text: str, fix: str) -> None:
        self.errors += 1
        self.lines += [f"  ERROR    {text}", f"           fix: {fix}"]


def named(dotted: str) -> str:
    """`sources.fx_api.token (env SOURCES__FX_API__TOKEN)`."""
    return f"{dotted} (env {env_name(dotted)})"


def assign(dotted: str, value: str) -> str:
    """`sources.fx_api.enabled = false (env SOURCES__FX_API__ENABLED=false)`."""
    return f"{dotted} = {value} (env {env_name(dotted)}={value})"


def configured(source: str, key: str) -> object:
    """A source's setting as dlt resolves it for extract: the environment, .dlt/secrets.toml, .dlt/config.toml."""
    dotted = setting(source, key)
    value = dlt.secrets.get(dotted)
    return value if value is not None else dlt.config.get(dotted)


def reporting_currency() -> str:
    """The dbt var `reporting_currency` of dbt_project.yml (default USD)."""
    project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
    return str((project.get("vars") or {}).get("reporting_currency") or "USD").strip().upper()


def mode(source: str, findings: Findings) -> str | None:
    """'off', 'demo' or 'own' as extract will read the source; None (with an error) for a missing demo."""
    try:
        enabled = is_enabled(source)
    except SourceSettingError as error:
        findings.error(str(error), f"remove {named(setting(source, 'enabled'))}: every feature needs the app database")
        return None
    if not enabled:
        findings.info(f"turned off ({assign(setting(source, 'enabled'), 'false')}): its tables load empty")
        return "off"
    if not uses_demo(source):
        return "own"
    path = demo_dir() / DEMO_FILES[source]
    if not path.exists():
        findings.error(
            f"reads the demo data ({setting(source, 'demo')} = true), but {path} was not generated",
            f"run `make demo-data`, or set {assign(setting(source, 'demo'), 'false')} and point it at your data",
        )
        return None
    findings.info(f"demo data ({setting(source, 'demo')} = true) at {path}")
    return "demo"


# ---------------------------------------------------------------- app database


def app_url(findings: Findings, demo: bool) -> sa.engine.URL | None:
    credentials = f"sqlite:///{demo_dir() / DEMO_FILES['app']}" if demo else configured("app", "credentials")
    location = setting("app", "credentials")
    if not credentials:
        findings.error(f"{location} is not set", f"set {named(location)} to a SQLAlchemy URL of your app database")
        return None
    try:
        return parse_url(str(credentials))
    except SourceSettingError as error:
        findings.error(str(error), f"set {named(location)} to a SQLAlchemy URL that reaches your app database")
        return None


def check_columns(inspector: sa.Inspector, schema: str | None, findings: Findings) -> dict[str, dict[str, str]]:
    """Per contract table present: its columns (contract name -> the database's spelling)."""
    present = {name.lower(): name for name in inspector.get_table_names(schema=schema)}
    tables: dict[str, dict[str, str]] = {}
    for table in APP_TABLES:
        if table not in present:
            findings.error(
                f"the app database has no table {table}",
                f"create {table}({', '.join(CONTRACT_COLUMNS[table])}) (README: the raw contract), "
                f"or set {named(setting('app', 'schema'))} to the schema that holds it",
            )
            continue
        columns = {column["name"].lower(): column["name"] for column in inspector.get_columns(present[table], schema)}
        missing = [name for name in CONTRACT_COLUMNS[table] if name not in columns]
        if missing:
            findings.error(
                f"table {table} lacks the raw contract's column(s) {', '.join(missing)}",
                f"add or rename them: {table}({', '.join(CONTRACT_COLUMNS[table])})",
            )
            continue
        tables[present[table]] = columns
    if len(tables) == len(APP_TABLES):
        findings.ok(f"tables {', '.join(APP_TABLES)} have the raw contract's columns")
    return tables


def sample_checks(connection: duckdb.DuckDBPyConnection, findings: Findings) -> None:
    """ids, amounts and timestamps of the sampled transactions (table `sample`), cast as staging casts them."""
    [(rows, no_id, no_user, bad_amount, bad_created, example_amount, example_created)] = connection.sql(
        """
        select
            count(*),
            count(*) filter (where nullif(trim(transaction_id), '') is null),
            count(*) filter (where nullif(trim(user_id), '') is null),
            count(*) filter (where amount is not null and try_cast(trim(amount) as decimal(38, 6)) is null),
            count(*) filter (where created_at is not null and try_cast(created_at as timestamptz) is null),
            min(amount) filter (where try_cast(trim(amount) as decimal(38, 6)) is null and amount is not null),
            min(created_at) filter (where try_cast(created_at as timestamptz) is null and created_at is not null)
        from sample
        """
    ).fetchall()
    if rows and no_id == rows:
        findings.error(
            f"every sampled transaction ({rows:,}) has no transaction_id: all would be quarantined as missing_key",
            "fill transactions.transaction_id (integers or text ids both work)",
        )
    elif no_id or no_user:
        findings.warn(
            f"{no_id:,} of {rows:,} sampled transactions have no transaction_id, {no_user:,} no user_id "
            "(quarantined as missing_key)",
            "fill the keys at the source",
        )
    if bad_amount:
        level = findings.error if bad_amount == rows else findings.warn
        level(
            f"{bad_amount:,} of {rows:,} sampled amounts are not numbers (e.g. {example_amount!r})",
            "write amounts as numbers or decimal text like 12.50 (no currency signs, no thousands separators)",
        )
    if bad_created:
        level = findings.error if bad_created == rows else findings.warn
        level(
            f"{bad_created:,} of {rows:,} sampled created_at cannot be read as timestamps (e.g. {example_created!r})",
            "write timestamps as ISO 8601, e.g. 1997-01-01 00:00:00 or 1997-01-01T00:00:00+00:00",
        )
    if rows and not (bad_amount or bad_created or no_id or no_user):
        findings.ok(f"a sample of {rows:,} transactions: ids present, amounts numbers, created_at timestamps")


def text_table(result: sa.CursorResult) -> pa.Table:
    """A result's rows as an all-text Arrow table (values as the database gives them, cast as text)."""
    names = list(result.keys())
    rows = result.fetchall()
    columns = {name: [None if row[i] is None else str(row[i]) for row in rows] for i, name in enumerate(names)}
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def check_app(findings: Findings, demo: bool) -> None:
    url = app_url(findings, demo)
    if url is None:
        return
    schema = configured("app", "schema") if not demo else None
    engine = sa.create_engine(url, **engine_options(url))
    try:
        with engine.connect() as database:
            findings.ok(f"connects to {url.render_as_string(hide_password=True)}")
            tables = check_columns(sa.inspect(database), str(schema) if schema else None, findings)
            transactions = next((name for name in tables if name.lower() == "transactions"), None)
            counts = {}
            for name in tables:
                counts[name.lower()] = database.execute(
                    sa.select(sa.func.count()).select_from(sa.table(name, schema=schema))
                ).scalar_one()
            if counts:
                findings.ok("rows: " + ", ".join(f"{name} {count:,}" for name, count in counts.items()))
            if transactions is None:
                return
            if counts.get("transactions") == 0:
                findings.error("table transactions has no rows: a run would produce no features", "load it")
                return
            check_transactions(database, transactions, tables[transactions], schema, findings)
    except sa.exc.SQLAlchemyError as error:
        findings.error(
            f"cannot connect to the app database: {first_line(str(error.orig or error))}",
            f"check {named(setting('app', 'credentials'))} (host, port, user, password, database)",
        )
    finally:
        engine.dispose()


def check_transactions(
    database: sa.Connection, name: str, columns: dict[str, str], schema: object, findings: Findings
) -> None:
    table = sa.table(name, *(sa.column(columns[c]) for c in CONTRACT_COLUMNS["transactions"]), schema=schema)
    column = table.c
    wanted = [column[columns[c]].label(c) for c in ("transaction_id", "user_id", "amount", "created_at")]
    sample = text_table(database.execute(sa.select(*wanted).limit(SAMPLE_ROWS)))
    first, last, unreadable = created_at_range(database, column[columns["created_at"]])
    findings.ok(
        f"transactions created_at from {utc(first)} to {utc(last)}"
        + (f" ({unreadable:,} value(s) not timestamps, left out)" if unreadable else "")
    )
    currency = sa.func.upper(sa.func.trim(column[columns["currency"]]))
    by_currency = database.execute(sa.select(currency, sa.func.count()).group_by(currency)).all()
    findings.currencies = {str(code): int(count) for code, count in by_currency if code}
    with duckdb.connect() as connection:
        connection.register("sample", sample)
        sample_checks(connection, findings)


def utc(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if isinstance(value, dt.datetime) else str(value)


def created_at_range(database: sa.Connection, created_at: sa.ColumnElement) -> tuple[object, object, int]:
    """The first and last created_at of every transaction that reads as a timestamp (as staging casts
    it), and how many do not; read in batches, so a large table is never held whole."""
    result = database.execution_options(yield_per=100_000).execute(sa.select(created_at.label("created_at")))
    first = last = None
    unreadable = 0
    with duckdb.connect() as connection:
        connection.execute("set TimeZone = 'UTC'")
        for rows in result.partitions():
            batch = pa.table({"created_at": pa.array([None if v is None else str(v) for (v,) in rows], pa.string())})
            connection.register("batch", batch)
            [(low, high, bad)] = connection.sql(
                "select min(try_cast(created_at as timestamptz)), max(try_cast(created_at as timestamptz)), "
                "count(*) filter (where created_at is not null and try_cast(created_at as timestamptz) is null) "
                "from batch"
            ).fetchall()
            first = low if first is None or (low is not None and low < first) else first
            last = high if last is None or (high is not None and high > last) else last
            unreadable += int(bad)
    return first, last, unreadable


# ---------------------------------------------------------------- bucket files and the FX API


def check_bucket(source: str, findings: Findings, demo: bool) -> None:
    location = setting(source, "bucket_url")
    url = str(demo_dir() / DEMO_FILES[source]) if demo else configured(source, "bucket_url")
    turn_off = f"or, if you have no {source}, set {assign(setting(source, 'enabled'), 'false')}"
    try:
        require_bucket(location, str(url or ""))
    except SourceSettingError as error:
        findings.error(str(error), f"set {named(location)} to the folder or bucket of your {source} files, {turn_off}")
        return
    glob = str(configured(source, "file_glob") or ("**/*.parquet" if source == "events" else "**/*"))
    path = local_path(str(url))
    protocol = "file" if path is not None else str(url).split("://")[0]
    root = str(path) if path is not None else str(url)
    try:
        files = [name for name in fsspec.filesystem(protocol).glob(f"{root.rstrip('/')}/{glob}") if "." in name]
    except Exception as error:  # noqa: BLE001 - a bucket client's own error, said in one line
        findings.error(f"cannot list {url}: {first_line(str(error))}", f"check {named(location)} and its credentials")
        return
    if not files:
        findings.error(
            f"no files under {url} ({setting(source, 'file_glob')} = {glob!r}): the raw {source} table would not "
            "exist and the build would fail",
            f"put your {source} files there, {turn_off}",
        )
        return
    findings.ok(f"{len(files):,} file(s) under {url}")


def check_fx(findings: Findings, state: str) -> None:
    if state == "demo":
        findings.served = set(
            pq.read_table(demo_dir() / DEMO_FILES["fx"], columns=["currency"])["currency"].to_pylist()
        )
        findings.ok(f"demo rates for {', '.join(sorted(findings.served))}")
        return
    base_url, token = configured("fx", "base_url"), configured("fx", "token")
    for key, value in (("base_url", base_url), ("token", token)):
        if not value:
            findings.error(f"{setting('fx', key)} is not set", f"set {named(setting('fx', key))}")
            return
    served: set[str] = set()
    start = configured("fx", "start_date") or "1900-01-01"
    for page in range(1, FX_PAGES + 1):
        try:
            answer = requests.get(
                f"{str(base_url).rstrip('/')}/{RATES_PATH}",
                params={"page": page, "page_size": 1000, "start_date": str(start)},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        except requests.RequestException as error:
            findings.error(
                f"cannot reach the FX API: {first_line(str(error))}", f"check {named(setting('fx', 'base_url'))}"
            )
            return
        if answer.status_code in (401, 403):
            findings.error(
                f"the FX API refused the token ({answer.status_code})", f"set {named(setting('fx', 'token'))}"
            )
            return
        if not answer.ok:
            findings.error(f"the FX API answered {answer.status_code}", f"check {named(setting('fx', 'base_url'))}")
            return
        body = answer.json()
        served |= {str(row.get("currency") or "").strip().upper() for row in body.get("data") or []}
        if page >= int(body.get("total_pages") or 1):
            break
    findings.served = served - {""}
    findings.ok(f"the FX API answers with the token; rates for {', '.join(sorted(findings.served)) or 'no currency'}")


def check_currencies(findings: Findings, fx_state: str | None) -> None:
    """Currencies of the transactions that no rate converts."""
    if not findings.currencies or findings.served is None and fx_state != "off":
        return
    reporting = reporting_currency()
    served = findings.served or set()
    missing = {code: rows for code, rows in findings.currencies.items() if code not in served and code != reporting}
    if not missing:
        findings.ok(f"every transaction currency has a rate or is the reporting currency {reporting}")
        return
    rows = sum(missing.values())
    total = sum(findings.currencies.values())
    listed = ", ".join(
        f"{code} ({count:,} transaction{'s' if count != 1 else ''})" for code, count in sorted(missing.items())
    )
    text = f"no rate for {listed}: {rows:,} of {total:,} transactions would be quarantined as missing_fx_rate"
    codes = ", ".join(sorted(missing))
    if fx_state == "off":
        turn_on = assign(setting("fx", "enabled"), "true")
        fixes = (
            f"turn the FX source on with rates for {codes} ({turn_on}, "
            f"{named(setting('fx', 'base_url'))}, {named(setting('fx', 'token'))})"
        )
    else:
        fixes = f"serve rates for {codes} from the FX source, or correct these currency codes at the source"
    if len(findings.currencies) == 1:
        [only] = findings.currencies
        fixes += f", or set the dbt var reporting_currency to {only} (dbt_project.yml vars; now {reporting})"
    (findings.error if rows == total else findings.warn)(text, fixes)


CHECKS: dict[str, Callable[[Findings, str], None]] = {
    "app": lambda findings, state: check_app(findings, state == "demo"),
    "events": lambda findings, state: check_bucket("events", findings, state == "demo"),
    "fx": check_fx,
    "chargebacks": lambda findings, state: check_bucket("chargebacks", findings, state == "demo"),
}


def run_doctor() -> int:
    """Check every source, print what was found; EXIT_PROBLEM when a run would fail or produce nothing."""
    findings = Findings()
    states: dict[str, str | None] = {}
    for source in ("app", "fx", "events", "chargebacks"):
        findings.lines.append(f"{source} (sources.{CONFIG_SECTIONS[source]}):")
        states[source] = mode(source, findings)
        if states[source] in ("demo", "own"):
            CHECKS[source](findings, states[source])  # type: ignore[arg-type]
    findings.lines.append(f"currencies (reporting currency {reporting_currency()}):")
    check_currencies(findings, states["fx"])
    for line in findings.lines:
        log(line)
    log(
        f"doctor: {findings.errors} error(s), {findings.warnings} warning(s): a run would fail or produce nothing"
        if findings.errors
        else f"doctor: no errors, {findings.warnings} warning(s): a run can produce features"
    )
    return EXIT_PROBLEM if findings.errors else EXIT_OK
