"""The ingestion service (FastAPI): POST transactions and events, one or a batch, validated against the
raw contract (realtime/contract.py) and published to the broker.

    POST /transactions, POST /events   a JSON object (one record) or an array of them (a batch)
        202  every record valid: {"accepted": [{"id", "message_id", "duplicate"}], "rejected": []}
        422  some invalid: each rejected one with its per-field problems (field, rule, reason) and the
             id of the dead letter that keeps it; the valid ones of the batch are published all the same
        401  no bearer token, or not the service's;  413  a body over the size limit, or too many records
        503  Redis did not answer: send the request again (the records published before it are
             answered as duplicates then)
    GET /healthz (Redis answers), GET /metrics (Prometheus), and realtime.features_api's routes.

Nothing is lost: a rejected record, or a body that is not JSON, goes as sent to the dead-letter stream,
which the consumer loads into `raw_stream.dead_letters` and dbt turns into quarantine rows with these
reasons. A record is published once per idempotency key (an event's id; a transaction's id and
updated_at): sent again, it is answered 202 with its first message id and `duplicate: true`.
A body refused with 413 is not kept: the client splits it and sends it again.
"""

import datetime as dt
import hmac
import json
import logging
import time
from typing import Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel

from realtime.broker import Broker, RedisStreamsBroker, connect
from realtime.contract import Problem, record_id, validate
from realtime.settings import KINDS, SettingError, Settings

logger = logging.getLogger("realtime.service")


class Accepted(BaseModel):
    id: str
    message_id: str
    duplicate: bool


class Rejected(BaseModel):
    index: int
    id: str | None
    problems: list[Problem]
    dead_letter_id: str


class IngestAnswer(BaseModel):
    accepted: list[Accepted]
    rejected: list[Rejected]


class Health(BaseModel):
    status: str
    redis: str


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self, broker: Broker) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ml_features_realtime_requests", "HTTP requests by route and status", ["route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.records = Counter(
            "ml_features_realtime_records", "Records received, by kind and outcome (published, duplicate, rejected)",
            ["kind", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.rejects = Counter(
            "ml_features_realtime_rejects", "Rejected records by kind and first rule", ["kind", "rule"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "ml_features_realtime_request_seconds", "Request latency by route", ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        self.registry.register(BacklogCollector(broker))


class BacklogCollector:
    """Stream length, consumer lag and pending messages, asked from the broker at each scrape."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def describe(self) -> list:
        return []

    def collect(self) -> Any:
        length = GaugeMetricFamily("ml_features_realtime_stream_length", "Entries in the stream", labels=["stream"])
        lag = GaugeMetricFamily(
            "ml_features_realtime_consumer_lag", "Entries not yet delivered to the consumer group", labels=["stream"]
        )
        pending = GaugeMetricFamily(
            "ml_features_realtime_consumer_pending", "Entries delivered but not acknowledged", labels=["stream"]
        )
        try:
            backlog = self.broker.backlog()
        except redis.RedisError:
            backlog = {}
        for stream, (entries, behind, unacknowledged) in backlog.items():
            length.add_metric([stream], entries)
            if behind is not None:
                lag.add_metric([stream], behind)
            pending.add_metric([stream], unacknowledged)
        yield from (length, lag, pending)


class PayloadTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or PayloadTooLarge as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge
    return bytes(body)


def create_app(settings: Settings | None = None, client: redis.Redis | None = None) -> FastAPI:
    """The service for `settings` (default: the environment), on `client` (default: settings.redis_url)."""
    settings = settings or Settings.from_env()
    if settings.token is None or not settings.token.get_secret_value():
        raise SettingError("ML_FEATURES_REALTIME_TOKEN is not set: the service accepts no request without a token")
    if client is None:
        if not settings.redis_url:
            raise SettingError("ML_FEATURES_REDIS_URL is not set: `python -m realtime` starts Redis and sets it")
        client = connect(settings.redis_url)
    broker = RedisStreamsBroker(client, settings)
    broker.ensure_group()
    metrics = Metrics(broker)
    expected = settings.token.get_secret_value().encode()

    def require_token(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    authorized = [Depends(require_token)]
    app = FastAPI(title="ml-features realtime", version="1")
    app.state.settings, app.state.client, app.state.broker, app.state.metrics = settings, client, broker, metrics

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    async def ingest(kind: str, request: Request) -> JSONResponse:
        try:
            body = await read_body(request, settings.max_request_bytes)
        except PayloadTooLarge:
            return too_large(f"the body is over {settings.max_request_bytes:,} bytes: send smaller batches")
        received_at = dt.datetime.now(dt.UTC)
        try:
            payload = json.loads(body)
        except ValueError:
            problem = Problem(field="", rule="malformed_record", reason="the body is not JSON")
            [letter] = broker.dead_letter([letter_of(kind, body.decode("utf-8", "replace"), [problem], received_at)])
            metrics.records.labels(kind, "rejected").inc()
            metrics.rejects.labels(kind, problem.rule).inc()
            answer = IngestAnswer(
                accepted=[], rejected=[Rejected(index=0, id=None, problems=[problem], dead_letter_id=letter)]
            )
            return JSONResponse(answer.model_dump(), status.HTTP_422_UNPROCESSABLE_CONTENT)
        records = payload if isinstance(payload, list) else [payload]
        if len(records) > settings.max_records:
            return too_large(f"{len(records):,} records: a batch holds at most {settings.max_records:,}")
        try:
            return publish(kind, records, received_at)
        except redis.RedisError as error:  # nothing was acknowledged: the client sends the batch again
            logger.warning("the broker did not answer: %s", type(error).__name__)
            detail = "the broker is unavailable: nothing of this request is acknowledged, send it again"
            return JSONResponse({"detail": detail}, status.HTTP_503_SERVICE_UNAVAILABLE)

    def publish(kind: str, records: list[Any], received_at: dt.datetime) -> JSONResponse:
        valid: list[tuple[int, Any]] = []
        invalid: list[tuple[int, Any, list[Problem]]] = []
        for index, record in enumerate(records):
            checked = validate(kind, record, received_at)
            if isinstance(checked, list):
                invalid.append((index, record, checked))
            else:
                valid.append((index, checked))
        published = broker.publish(kind, [(record.key(), record.row()) for _, record in valid])
        accepted = [
            Accepted(id=record.id(), message_id=message_id, duplicate=not new)
            for (_, record), (message_id, new) in zip(valid, published, strict=True)
        ]
        letters = broker.dead_letter(
            [letter_of(kind, json.dumps(record), problems, received_at) for _, record, problems in invalid]
        )
        rejected = [
            Rejected(index=index, id=record_id(kind, record), problems=problems, dead_letter_id=letter)
            for (index, record, problems), letter in zip(invalid, letters, strict=True)
        ]
        for item in accepted:
            metrics.records.labels(kind, "duplicate" if item.duplicate else "published").inc()
        for item in rejected:
            metrics.records.labels(kind, "rejected").inc()
            metrics.rejects.labels(kind, item.problems[0].rule).inc()
        code = status.HTTP_422_UNPROCESSABLE_CONTENT if rejected else status.HTTP_202_ACCEPTED
        return JSONResponse(IngestAnswer(accepted=accepted, rejected=rejected).model_dump(), code)

    for kind in KINDS:

        async def endpoint(request: Request, kind: str = kind) -> JSONResponse:
            return await ingest(kind, request)

        app.add_api_route(
            f"/{kind}",
            endpoint,
            methods=["POST"],
            dependencies=authorized,
            status_code=status.HTTP_202_ACCEPTED,
            response_model=IngestAnswer,
            responses={422: {"model": IngestAnswer}, 401: {}, 413: {}},
            summary=f"Ingest {kind}: one record (a JSON object) or a batch (an array)",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}},
        )

    @app.get("/healthz", response_model=Health)
    def healthz() -> JSONResponse:
        try:
            client.ping()
        except redis.RedisError as error:
            return JSONResponse(Health(status="unavailable", redis=type(error).__name__).model_dump(), 503)
        return JSONResponse(Health(status="ok", redis="ok").model_dump())

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    include_features(app, authorized)
    return app


def include_features(app: FastAPI, dependencies: list[Any]) -> None:
    """Serve realtime.features_api's router (features, scoring) behind the same token, when it exists."""
    try:
        from realtime.features_api import router
    except ImportError:
        return
    app.include_router(router, dependencies=dependencies)


def too_large(reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status.HTTP_413_CONTENT_TOO_LARGE)


def letter_of(kind: str, sent: str, problems: list[Problem], received_at: dt.datetime) -> dict[str, str]:
    """A dead letter: the record as sent (JSON text), its problems, when it came."""
    return {
        "kind": kind,
        "record": sent,
        "problems": json.dumps([problem.model_dump() for problem in problems], separators=(",", ":")),
        "received_at": received_at.isoformat(),
    }
