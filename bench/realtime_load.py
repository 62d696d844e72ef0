"""Load figures of the real-time path on loopback, bounded in time: `python -m bench.realtime_load`.

Starts the real stack in a temporary data folder (redis-server, the service under uvicorn, the
consumer, as `python -m realtime` does) with an online store synced from a small synthetic gold
(`--users` users, USD), then:
  1. ingest: `--clients` threads POST batches of `--batch` new events (one transaction in ten) for
     `--seconds`; meanwhile a probe POSTs one transaction every 100 ms and polls
     GET /features/{user}/transactions/{id} until it answers 200: freshness = POST accepted -> visible;
  2. the consumer drains the backlog (bounded): its throughput, records loaded and applied per second;
  3. serving: `--clients` threads GET /features/{user}?at=... for `--seconds` / 2.
Prints the sustained ingest rate (records accepted per second), p50/p99 of the POST and GET latency,
freshness p50/p99 and the consumer's rate, against the aims of issue 24 (>= 5,000 events/s, GET p99 <
10 ms, freshness p99 < 2 s). The load generator runs on the same cores as the stack.
"""

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import httpx
import redis

from realtime import online_store
from realtime.redis_server import HOST, RedisServer

PROJECT_DIR = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-not-a-secret"
NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def write_gold(path: Path, users: int) -> None:
    """A published gold with the online_* tables: `users` users, USD only, fitted parameters."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as connection:
        connection.execute("set TimeZone = 'UTC'; create schema marts; create schema publication")
        connection.execute("create table publication.version as select 'bench' as invocation_id")
        connection.execute(
            "create table marts.preprocessing_parameters as select 100.0::double as amount_usd_mean, "
            "50.0::double as amount_usd_stddev, 900.0::double as amount_usd_p99, 40.0::double as median_age"
        )
        connection.execute(
            "create table marts.online_users as select 'u' || i as user_id, timestamp '2025-01-01' as signup_at, "
            "(20 + i % 50)::integer as age, 'us' as country_group from range(?) as t(i)",
            [users],
        )
        connection.execute(
            "create table marts.online_user_tiers as select user_id, 'silver' as loyalty_tier, "
            "signup_at as valid_from, null::timestamp as valid_to from marts.online_users"
        )
        connection.execute(
            "create table marts.online_fx_rates as select 'USD' as currency, null::date as valid_from_date, "
            "null::date as valid_to_date, null::double as rate_to_usd"
        )
        connection.execute(
            "create table marts.online_transactions (transaction_id varchar, user_id varchar, created_at timestamp, "
            "updated_at timestamp, amount decimal(28, 6), currency varchar, amount_usd decimal(28, 6), "
            "device_group varchar)"
        )
        connection.execute(
            "create table marts.online_events (event_id varchar, user_id varchar, occurred_at timestamp)"
        )


class Stack:
    def __init__(self, data_dir: Path, consumer_batch: int, consumer_wait_ms: int) -> None:
        self.data_dir = data_dir
        self.redis = RedisServer(free_port(), data_dir / "redis")
        self.redis.start()
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ML_FEATURES_")},
            "ML_FEATURES_DATA_DIR": str(data_dir),
            "ML_FEATURES_DUCKDB_PATH": str(data_dir / "warehouse.duckdb"),
            "DBT_TARGET_PATH": str(data_dir / "target"),
            "ML_FEATURES_REDIS_URL": self.redis.url,
            "ML_FEATURES_REALTIME_TOKEN": TOKEN,
            "ML_FEATURES_REALTIME_BATCH_RECORDS": str(consumer_batch),
            "ML_FEATURES_REALTIME_BATCH_MILLISECONDS": str(consumer_wait_ms),
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], log: str) -> None:
        with (self.data_dir / log).open("ab") as output:
            self.processes.append(
                subprocess.Popen(
                    command, cwd=PROJECT_DIR, env=self.environment, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            )  # fmt: skip

    def start_all(self) -> None:
        self.start(
            [sys.executable, "-m", "uvicorn", "realtime.service:create_app", "--factory", "--host", HOST,
             "--port", str(self.port), "--no-access-log"],
            "service.log",
        )  # fmt: skip
        self.start([sys.executable, "-m", "realtime.consumer"], "consumer.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the service did not start: {(self.data_dir / 'service.log').read_text()[-2000:]}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.redis.stop()


def ingest(stack: Stack, seconds: float, clients: int, batch: int, users: int) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    freshness: list[float] = []
    not_visible = [0]

    def client_loop(number: int) -> None:
        sequence = 0
        with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
            while time.monotonic() < stop_at:
                sequence += 1
                events, transactions = [], []
                for i in range(batch):
                    user = f"u{random.randrange(users)}"
                    at = (NOW - dt.timedelta(seconds=random.randrange(3600))).isoformat(sep=" ")
                    if i % 10 == 9:
                        transactions.append({"transaction_id": f"b{number}-{sequence}-{i}", "user_id": user,
                                             "amount": "12.34", "currency": "USD", "status": "ok",
                                             "device_type": "mobile", "created_at": at, "updated_at": at})  # fmt: skip
                    else:
                        events.append({"event_id": f"e{number}-{sequence}-{i}", "user_id": user, "session_id": "s",
                                       "event_type": "view", "device_type": "mobile", "occurred_at": at,
                                       "properties": None})  # fmt: skip
                for kind, records in (("events", events), ("transactions", transactions)):
                    started = time.perf_counter()
                    answer = http.post(f"/{kind}", content=json.dumps(records))
                    elapsed = time.perf_counter() - started
                    if answer.status_code != 202:
                        raise RuntimeError(f"POST /{kind}: {answer.status_code} {answer.text[:300]}")
                    with lock:
                        latencies.append(elapsed)
                        accepted[0] += len(records)

    def probe_loop() -> None:
        sequence = 0
        with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
            while time.monotonic() < stop_at:
                sequence += 1
                user, txn_id = f"u{random.randrange(users)}", f"probe-{sequence}"
                at = NOW.isoformat(sep=" ")
                record = {"transaction_id": txn_id, "user_id": user, "amount": "5", "currency": "USD",
                          "status": "ok", "device_type": "tablet", "created_at": at, "updated_at": at}  # fmt: skip
                answer = http.post("/transactions", content=json.dumps(record))
                accepted_at = time.perf_counter()
                if answer.status_code != 202:
                    raise RuntimeError(f"probe POST: {answer.status_code} {answer.text[:300]}")
                deadline = accepted_at + 30
                while time.perf_counter() < deadline:
                    if http.get(f"/features/{user}/transactions/{txn_id}").status_code == 200:
                        freshness.append(time.perf_counter() - accepted_at)
                        break
                    time.sleep(0.005)
                else:
                    not_visible[0] += 1
                time.sleep(0.1)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
    threads.append(threading.Thread(target=probe_loop))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {
        "records": accepted[0],
        "seconds": elapsed,
        "rate": accepted[0] / elapsed,
        "post_p50_ms": percentile(latencies, 0.5) * 1000,
        "post_p99_ms": percentile(latencies, 0.99) * 1000,
        "requests": len(latencies),
        "freshness_p50_s": percentile(freshness, 0.5),
        "freshness_p99_s": percentile(freshness, 0.99),
        "freshness_samples": len(freshness),
        "not_visible_within_30s": not_visible[0],
    }


def idle_freshness(stack: Stack, probes: int, users: int) -> list[float]:
    """POST accepted -> visible for single transactions with no other load (the consumer's batch wait and
    one load through dlt)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    found = []
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        for number in range(probes):
            user, txn_id = f"u{random.randrange(users)}", f"idle-{number}"
            at = NOW.isoformat(sep=" ")
            record = {"transaction_id": txn_id, "user_id": user, "amount": "5", "currency": "USD",
                      "status": "ok", "device_type": "tablet", "created_at": at, "updated_at": at}  # fmt: skip
            if http.post("/transactions", content=json.dumps(record)).status_code != 202:
                raise RuntimeError("idle probe POST refused")
            accepted_at = time.perf_counter()
            while time.perf_counter() < accepted_at + 30:
                if http.get(f"/features/{user}/transactions/{txn_id}").status_code == 200:
                    found.append(time.perf_counter() - accepted_at)
                    break
                time.sleep(0.005)
    return found


def drain(client: redis.Redis, seconds: float) -> float:
    """Seconds until the consumer group has nothing left to read or acknowledge (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        waiting = 0
        for stream in ("ml_features:transactions", "ml_features:events"):
            try:
                for group in client.xinfo_groups(stream):
                    waiting += int(group.get("lag") or 0) + int(group.get("pending") or 0)
            except redis.ResponseError:
                pass
        if waiting == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    return float("nan")


def serve(stack: Stack, seconds: float, clients: int, users: int) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    at = NOW.isoformat()

    def loop() -> None:
        mine = []
        with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                answer = http.get(f"/features/u{random.randrange(users)}", params={"at": at})
                mine.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET /features: {answer.status_code} {answer.text[:300]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "requests": len(latencies),
        "rate": len(latencies) / seconds,
        "get_p50_ms": percentile(latencies, 0.5) * 1000,
        "get_p99_ms": percentile(latencies, 0.99) * 1000,
    }


def server_side(stack: Stack, route: str) -> dict[str, float]:
    """The service's own latency histogram of `route` (prometheus-client, /metrics): mean, and the
    smallest bucket bound holding 50% and 99% of the requests (the time inside the service, without the
    client's and the loopback's)."""
    text = httpx.get(f"{stack.url}/metrics", timeout=30).text
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in text.splitlines():
        if f'route="{route}"' not in line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("ml_features_realtime_request_seconds_bucket"):
            bound = name.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(value)))
        elif name.startswith("ml_features_realtime_request_seconds_sum"):
            total = float(value)
        elif name.startswith("ml_features_realtime_request_seconds_count"):
            count = float(value)
    buckets.sort()

    def bound(fraction: float) -> float:
        return next((b for b, n in buckets if count and n >= fraction * count), float("nan"))

    return {"mean_ms": total / count * 1000 if count else float("nan"), "p50_le_ms": bound(0.5) * 1000,
            "p99_le_ms": bound(0.99) * 1000}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="ingest phase length (serving: half)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--batch", type=int, default=500, help="records per POST")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--get-clients", type=int, default=2, help="concurrent clients of the GET phase")
    parser.add_argument("--consumer-batch", type=int, default=5000, help="ML_FEATURES_REALTIME_BATCH_RECORDS")
    parser.add_argument("--consumer-wait-ms", type=int, default=250, help="ML_FEATURES_REALTIME_BATCH_MILLISECONDS")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="realtime-load-"))
    stack = Stack(data_dir, args.consumer_batch, args.consumer_wait_ms)
    try:
        write_gold(data_dir / "published" / "gold.duckdb", args.users)
        client = redis.Redis.from_url(stack.redis.url)
        online_store.sync(client, data_dir / "published" / "gold.duckdb")
        stack.start_all()
        print(
            f"[load] stack up on {stack.url} (data {data_dir}); {os.cpu_count()} cpus; ingest {args.seconds:.0f}s ..."
        )
        ingested = ingest(stack, args.seconds, args.clients, args.batch, args.users)
        backlog_started = time.monotonic()
        drained = drain(client, 120)
        consumer_seconds = ingested["seconds"] + (time.monotonic() - backlog_started)
        idle = idle_freshness(stack, 20, args.users)
        served = serve(stack, args.seconds / 2, args.get_clients, args.users)
        inside = server_side(stack, "/features/{user_id}")
    finally:
        stack.stop()
    shutil.rmtree(data_dir, ignore_errors=True)  # kept when the run failed: the service and consumer logs
    print(
        f"[load] ingest: {ingested['records']:,} records accepted in {ingested['seconds']:.1f}s = "
        f"{ingested['rate']:,.0f} records/s sustained (aim >= 5,000); POST of {args.batch} records: "
        f"p50 {ingested['post_p50_ms']:.1f} ms, p99 {ingested['post_p99_ms']:.1f} ms "
        f"({ingested['requests']:,} requests)"
    )
    print(
        f"[load] consumer: backlog drained {drained:.1f}s after the ingest ended: "
        f"{ingested['records'] / consumer_seconds:,.0f} records/s loaded through dlt and applied to the store"
    )
    print(
        f"[load] freshness (POST accepted -> GET shows the transaction): p50 {ingested['freshness_p50_s']:.2f}s, "
        f"p99 {ingested['freshness_p99_s']:.2f}s over {ingested['freshness_samples']} probes "
        f"({ingested['not_visible_within_30s']} not visible within 30s) (aim p99 < 2 s)"
    )
    print(
        f"[load] freshness without other load: p50 {percentile(idle, 0.5):.2f}s, p99 {percentile(idle, 0.99):.2f}s "
        f"over {len(idle)} probes (consumer batch {args.consumer_batch} records or {args.consumer_wait_ms} ms)"
    )
    print(
        f"[load] GET /features: {served['requests']:,} requests, {served['rate']:,.0f}/s, "
        f"p50 {served['get_p50_ms']:.2f} ms, p99 {served['get_p99_ms']:.2f} ms (aim p99 < 10 ms) at the client; "
        f"inside the service (its /metrics histogram): mean {inside['mean_ms']:.2f} ms, "
        f"p50 <= {inside['p50_le_ms']:g} ms, p99 <= {inside['p99_le_ms']:g} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
