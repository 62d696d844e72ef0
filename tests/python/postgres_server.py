"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, listen on 127.0.0.1.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
(Debian's `postgresql` package creates it). Skips only when the binaries are not installed.
"""

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import free_port

from extract.app_database import with_installed_driver

SERVER_USER = "postgres"
LOGIN = "loader"


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian install, or on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def as_server_user(command: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (PostgreSQL will not run as root)."""
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield the SQLAlchemy URL of its `postgres` database for a password login."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    # not under pytest's tmp dirs: those are private to the user running the tests
    root = Path(tempfile.mkdtemp(prefix="ml-features-pg-"))
    password = secrets.token_hex(12)
    (root / "password").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(root, SERVER_USER)
        shutil.chown(root / "password", SERVER_USER)
    data, port = root / "data", free_port()
    try:
        subprocess.run(
            as_server_user(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    LOGIN,
                    f"--pwfile={root / 'password'}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        subprocess.run(
            as_server_user(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(root / "log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://{LOGIN}:{password}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server; return its URL."""
    engine = sa.create_engine(with_installed_driver(sa.engine.make_url(server_url)), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'create database "{name}"'))
    engine.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def copy_sqlite(sqlite_path: Path, url: str) -> None:
    """Copy every table of a SQLite file into the database at `url` (integers as bigint, the rest as is)."""
    source = sa.create_engine(f"sqlite:///{sqlite_path}")
    target = sa.create_engine(with_installed_driver(sa.engine.make_url(url)))
    metadata = sa.MetaData()
    metadata.reflect(source)
    for table in metadata.sorted_tables:
        columns = [
            sa.Column(column.name, sa.BigInteger if isinstance(column.type, sa.Integer) else column.type)
            for column in table.columns
        ]
        copy = sa.Table(table.name, sa.MetaData(), *columns)
        copy.create(target)
        with source.connect() as reading:
            rows = [dict(row._mapping) for row in reading.execute(table.select())]
        with target.begin() as writing:
            writing.execute(copy.insert(), rows)
    source.dispose()
    target.dispose()
