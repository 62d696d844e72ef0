"""The real-time stack's settings, from the environment (all optional; `Settings.from_env()`).

ML_FEATURES_REDIS_URL                       an existing Redis to use (redis://host:port/db); unset: the
                                            project starts its own redis-server (realtime/redis_server.py)
ML_FEATURES_REALTIME_HOST / _PORT           where the service listens (127.0.0.1:8000)
ML_FEATURES_REALTIME_REDIS_PORT             the port of the redis-server the project starts (6380)
ML_FEATURES_REALTIME_TOKEN                  the bearer token clients send; unset: `python -m realtime`
                                            makes one and keeps it in <data dir>/realtime/token (0600)
ML_FEATURES_REALTIME_MAX_REQUEST_BYTES      a larger POST body is refused with 413 (1 MiB)
ML_FEATURES_REALTIME_MAX_RECORDS            records in one POST, at most (5,000)
ML_FEATURES_REALTIME_IDEMPOTENCY_SECONDS    how long a record's key is remembered: the same record
                                            POSTed again within it is not published again (1 day; a key
                                            takes about 100 bytes of Redis memory)
ML_FEATURES_REALTIME_BATCH_RECORDS          the consumer loads a micro-batch at this many records (5,000)
ML_FEATURES_REALTIME_BATCH_MILLISECONDS     ... or when this long has passed since its first record (250):
                                            a dlt load costs about a second whatever its size, so large
                                            batches keep up with the ingest and a short wait keeps it fresh
ML_FEATURES_REALTIME_CLAIM_IDLE_MILLISECONDS  a message delivered to a consumer that has not acknowledged it
                                            for this long is taken over by another (60,000): a dead
                                            consumer's pending messages are reclaimed
ML_FEATURES_REALTIME_CONSUMER               this consumer's name in the group (consumer-1); a restart under
                                            the same name takes its own pending messages back at once
ML_FEATURES_REALTIME_LOCK_WAIT_SECONDS      how long the consumer waits for the warehouse when another
                                            process (a dbt build) holds it, before it stops (3,600)
ML_FEATURES_REALTIME_RETENTION_HOURS       acknowledged stream entries are kept this long, then trimmed (24);
                                            an entry not yet delivered or acknowledged is never trimmed
ML_FEATURES_REALTIME_STREAM_PREFIX          the streams' names: <prefix>:transactions, :events, :dead_letters
                                            (ml_features)
The warehouse is the pipeline's: ML_FEATURES_DUCKDB_PATH / ML_FEATURES_DATA_DIR (extract/load.py).
"""

import os
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, ValidationError

from extract.load import data_dir

PREFIX = "ML_FEATURES_REALTIME_"
KINDS = ("transactions", "events")


class SettingError(ValueError):
    """A setting in the environment that does not parse: its name and what is wrong, on one line."""


class Settings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    redis_url: str | None = None
    redis_port: int = Field(6380, ge=1, le=65535)
    token: SecretStr | None = None
    max_request_bytes: int = Field(1024 * 1024, gt=0)
    max_records: int = Field(5000, gt=0)
    idempotency_seconds: int = Field(24 * 3600, gt=0)
    batch_records: int = Field(5000, gt=0)
    batch_milliseconds: int = Field(250, gt=0)
    claim_idle_milliseconds: int = Field(60_000, gt=0)
    consumer: str = "consumer-1"
    group: str = "ml_features"
    lock_wait_seconds: float = Field(3600.0, gt=0)
    retention_hours: int = Field(24, ge=0)
    stream_prefix: str = "ml_features"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, str] = {}
        for name in cls.model_fields:
            value = environ.get(PREFIX + name.upper())
            if value is not None and value.strip() != "":
                values[name] = value.strip()
        if environ.get("ML_FEATURES_REDIS_URL", "").strip():
            values["redis_url"] = environ["ML_FEATURES_REDIS_URL"].strip()
        try:
            return cls(**values)
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            variable = "ML_FEATURES_REDIS_URL" if field == "redis_url" else PREFIX + field.upper()
            raise SettingError(f"{variable}: {first['msg']}") from None

    def stream(self, kind: str) -> str:
        """The stream of `kind`: transactions, events or dead_letters."""
        return f"{self.stream_prefix}:{kind}"

    def idempotency_key(self, kind: str, key: str) -> str:
        return f"{self.stream_prefix}:seen:{kind}:{key}"


def realtime_dir() -> Path:
    """The stack's files: `<data dir>/realtime` (the token file)."""
    return data_dir() / "realtime"


def redis_dir() -> Path:
    """The redis-server's data (append-only file, snapshot): `<data dir>/redis`."""
    return data_dir() / "redis"


def token_file() -> Path:
    return realtime_dir() / "token"
