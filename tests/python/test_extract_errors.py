"""A bad source setting stops the real CLI with one line naming the source and the setting.

Every case runs `python -m extract` as a subprocess (all at once, they are independent) and
checks: exit code 1, exactly one line on stderr, no traceback, the source and the setting named,
and no secret echoed.
"""

import socket
from dataclasses import dataclass
from pathlib import Path

from extract_support import Workspace, start_cli

from demo.fx_api_server import FxApiServer
from demo.generate import generate

SECRET = "s3cr3t-pw"


@dataclass(frozen=True)
class BadSetting:
    """A configuration that must fail, and what its one line must say."""

    source: str
    settings: dict[str, str]
    expected: tuple[str, ...]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cases(api_url: str, port: int) -> dict[str, BadSetting]:
    app = {"SOURCES__APP_DATABASE__DEMO": "false"}
    fx = {
        "SOURCES__FX_API__DEMO": "false",
        "RUNTIME__REQUEST_MAX_ATTEMPTS": "2",
        "RUNTIME__REQUEST_BACKOFF_FACTOR": "0",
    }
    events = {"SOURCES__EVENT_STREAM__DEMO": "false"}
    files = {"SOURCES__BUCKET_FILES__DEMO": "false"}
    return {
        "app URL that does not parse": BadSetting(
            "app", {**app, "SOURCES__APP_DATABASE__CREDENTIALS": "not a url"}, ("sources.app_database.credentials",)
        ),
        "app database unreachable": BadSetting(
            "app",
            {**app, "SOURCES__APP_DATABASE__CREDENTIALS": f"postgresql://loader:{SECRET}@127.0.0.1:{port}/app"},
            ("sources.app_database.credentials", "Connection refused"),
        ),
        "app credentials missing": BadSetting(
            "app", app, ("missing setting sources.app_database.credentials", "SOURCES__APP_DATABASE__CREDENTIALS")
        ),
        "fx token missing": BadSetting(
            "fx", {**fx, "SOURCES__FX_API__BASE_URL": api_url}, ("missing setting sources.fx_api.token",)
        ),
        "fx token wrong": BadSetting(
            "fx",
            {**fx, "SOURCES__FX_API__BASE_URL": api_url, "SOURCES__FX_API__TOKEN": SECRET},
            ("sources.fx_api.token", "401"),
        ),
        "fx API unreachable": BadSetting(
            "fx",
            {**fx, "SOURCES__FX_API__BASE_URL": f"http://127.0.0.1:{port}", "SOURCES__FX_API__TOKEN": SECRET},
            ("sources.fx_api.base_url", f"127.0.0.1:{port}", "Connection refused"),
        ),
        "events folder missing": BadSetting(
            "events",
            {**events, "SOURCES__EVENT_STREAM__BUCKET_URL": "/no/such/events"},
            ("sources.event_stream.bucket_url", "no such folder"),
        ),
        "chargebacks protocol unknown": BadSetting(
            "chargebacks",
            {**files, "SOURCES__BUCKET_FILES__BUCKET_URL": "nosuch://bucket/chargebacks"},
            ("sources.bucket_files.bucket_url", "unknown protocol"),
        ),
        "chargebacks s3 credentials missing": BadSetting(
            "chargebacks",
            {**files, "SOURCES__BUCKET_FILES__BUCKET_URL": "s3://ml-features-example/chargebacks"},
            ("sources.bucket_files.credentials.aws_access_key_id",),
        ),
        "demo data not generated": BadSetting("events", {}, ("demo data", "python -m demo.generate")),
    }


def test_bad_settings_fail_with_one_line(tmp_path: Path) -> None:
    rates = tmp_path / "api" / "fx_rates.parquet"
    generate(rates.parent, seed=1, scale=50)
    with FxApiServer(rates, token="the-right-token") as server:
        bad = cases(server.start(), closed_port())
        running = {
            name: start_cli(Workspace(tmp_path / f"ws{i}"), case.source, **case.settings)
            for i, (name, case) in enumerate(bad.items())
        }
        finished = {name: process.communicate(timeout=180) + (process.returncode,) for name, process in running.items()}
    failures = []
    for name, (_, stderr, code) in finished.items():
        case = bad[name]
        lines = stderr.strip().splitlines()
        ok = (
            code == 1
            and len(lines) == 1
            and "Traceback" not in stderr
            and lines[0].startswith(f"extract failed: {case.source}: ")
            and all(text in lines[0] for text in case.expected)
            and SECRET not in stderr
        )
        if not ok:
            failures.append(f"{name}: exit {code}, stderr {stderr!r}")
    assert not failures, "\n".join(failures)


def test_unknown_source_fails_before_any_load(tmp_path: Path) -> None:
    space = Workspace(tmp_path)
    process = start_cli(space, "app,nosuch")
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 1
    assert stderr == "extract failed: unknown source 'nosuch': choose from app, events, fx, chargebacks\n"
    assert not space.duckdb_path.exists()
