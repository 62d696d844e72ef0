"""A local FX rates API for the demo: `python -m demo.fx_api_server --rates data/demo/fx_rates.parquet`.

    GET /v1/rates?start_date=YYYY-MM-DD&page=1&page_size=500
    Authorization: Bearer <token>

answers `{"data": [{"date", "currency", "rate_to_usd"}, ...], "page", "page_size", "total_pages",
"next_page"}`, ordered by date and currency; `start_date` (optional) keeps dates on or after it.
A missing or wrong token gets 401. The rates are re-read whenever the Parquet file changes, so a
regenerated file is served without a restart.

For testing retries, `fail_every=N` makes every Nth request fail before anything else is
checked: 503 first, then 429 with `Retry-After: 0`, alternating.
"""

import argparse
import json
import math
import signal
import threading
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq

RATES_PATH = "/v1/rates"
DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 10_000


class BadRequest(ValueError):
    """A query parameter the API cannot use; answered with 400."""


class RatesFile:
    """The rows of the rates Parquet file, re-read when the file's mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._rows: list[dict[str, Any]] = []

    def rows(self) -> list[dict[str, Any]]:
        """All rates as JSON-ready dicts, ordered by date and currency."""
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._rows = read_rates(self.path)
                self._stamp = stamp
            return self._rows


def read_rates(path: Path) -> list[dict[str, Any]]:
    """Read the rates file into dicts with ISO dates, ordered by date and currency."""
    table = pq.read_table(path, columns=["date", "currency", "rate_to_usd"])
    rows = [
        {"date": row["date"].isoformat(), "currency": row["currency"], "rate_to_usd": row["rate_to_usd"]}
        for row in table.to_pylist()
    ]
    return sorted(rows, key=lambda row: (row["date"], row["currency"]))


def parse_query(query: str) -> tuple[str | None, int, int]:
    """(start_date, page, page_size) from the query string; BadRequest when one is invalid."""
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    start_date = params.get("start_date") or None
    if start_date is not None:
        try:
            # cursors may come back as full timestamps: only the date part filters
            start_date = date.fromisoformat(start_date[:10]).isoformat()
        except ValueError as error:
            raise BadRequest(f"start_date {start_date!r} is not a YYYY-MM-DD date") from error
    page = parse_int(params, "page", 1, 1, None)
    page_size = parse_int(params, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    return start_date, page, page_size


def parse_int(params: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    """An integer parameter within [low, high]."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise BadRequest(f"{name} {raw!r} is not an integer") from error
    if value < low:
        raise BadRequest(f"{name} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise BadRequest(f"{name} must be at most {high}, got {value}")
    return value


def rates_page(rows: list[dict[str, Any]], start_date: str | None, page: int, page_size: int) -> dict[str, Any]:
    """One page of the (filtered) rates in the API's envelope."""
    if start_date is not None:
        rows = [row for row in rows if row["date"] >= start_date]
    total_pages = math.ceil(len(rows) / page_size)
    first = (page - 1) * page_size
    return {
        "data": rows[first : first + page_size],
        "page": page,
        "page_size": page_size,
        "total_pages": total_pages,
        "next_page": page + 1 if page < total_pages else None,
    }


class FxApiServer:
    """The FX API on a local port, served from a daemon thread.

    Use as `with FxApiServer(path, token="t") as server: url = server.start()`; `start()` is
    idempotent and returns the base URL, e.g. `http://127.0.0.1:54321`.
    """

    def __init__(
        self, rates_path: Path, token: str, host: str = "127.0.0.1", port: int = 0, fail_every: int = 0
    ) -> None:
        self.rates = RatesFile(Path(rates_path))
        self.token = token
        self.host = host
        self.port = port
        self.fail_every = fail_every
        self.request_count = 0
        self._count_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The URL clients call, once started."""
        if self._httpd is None:
            raise RuntimeError("the FX API server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Bind the port and serve in a daemon thread; return the base URL."""
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer((self.host, self.port), make_handler(self))
            self._httpd.daemon_threads = True
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fx-api", daemon=True)
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "FxApiServer":
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def next_request(self) -> int:
        """Count a request and return its number (1-based)."""
        with self._count_lock:
            self.request_count += 1
            return self.request_count

    def injected_failure(self, number: int) -> HTTPStatus | None:
        """The failure request `number` must answer with, if any: 503 and 429 by turns."""
        if self.fail_every <= 0 or number % self.fail_every != 0:
            return None
        nth_failure = number // self.fail_every
        return HTTPStatus.SERVICE_UNAVAILABLE if nth_failure % 2 == 1 else HTTPStatus.TOO_MANY_REQUESTS

    def authorized(self, header: str | None) -> bool:
        """Whether the Authorization header carries the bearer token."""
        return header == f"Bearer {self.token}"


def make_handler(server: FxApiServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `server`."""

    class Handler(BaseHTTPRequestHandler):
        """Answers GET /v1/rates; everything else is 404 or 405."""

        server_version = "demo-fx-api/1.0"

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            failure = server.injected_failure(server.next_request())
            if failure is not None:
                headers = {"Retry-After": "0"} if failure == HTTPStatus.TOO_MANY_REQUESTS else {}
                self.send_json(failure, {"error": failure.phrase}, headers)
                return
            if not server.authorized(self.headers.get("Authorization")):
                headers = {"WWW-Authenticate": 'Bearer realm="fx"'}
                self.send_json(HTTPStatus.UNAUTHORIZED, {"error": "missing or invalid bearer token"}, headers)
                return
            url = urlsplit(self.path)
            if url.path.rstrip("/") != RATES_PATH:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {url.path}"})
                return
            try:
                start_date, page, page_size = parse_query(url.query)
            except BadRequest as error:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
                return
            self.send_json(HTTPStatus.OK, rates_page(server.rates.rows(), start_date, page, page_size))

        def send_json(self, status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            """Silence the per-request log lines."""

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.fx_api_server", description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=Path, default=Path("data/demo/fx_rates.parquet"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="demo-token")
    parser.add_argument("--fail-every", type=int, default=0, help="every Nth request fails (503/429)")
    args = parser.parse_args(argv)
    if not args.rates.exists():
        parser.error(f"{args.rates} does not exist: run `python -m demo.generate` first")
    # SIGTERM stops it as Ctrl-C does, even when started with SIGTERM ignored (inherited from its parent);
    # set before the first line is printed: a caller may send SIGTERM as soon as it reads it
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = FxApiServer(args.rates, args.token, args.host, args.port, args.fail_every)
    url = server.start()
    try:
        # the token is a secret: never printed (the caller chose it)
        print(f"FX API at {url}{RATES_PATH} (Authorization: Bearer <the --token given>); Ctrl-C stops it", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
