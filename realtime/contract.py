"""The raw contract of the pushed records, as pydantic models: what the service accepts and rejects.

The columns are the batch sources' (extract/app_database.py CONTRACT_COLUMNS, extract/contract.py
OPTIONAL_TABLES), every value carried as text like the raw tables (a JSON number becomes its text;
an event's `properties` object its JSON text), so staging reads a streamed row exactly as a batch
one. A record is rejected only for what the warehouse would quarantine whatever else it holds, with
the same rule names and reasons (macros/cleaning/validate_*.sql):

transactions: missing_key (no transaction_id), unknown_user (no user_id), unparseable_timestamp
(created_at), created_at_in_future (later than now + var max_clock_skew_minutes), non_numeric_amount,
amount_out_of_range, negative_amount, unknown_currency (none given), missing_updated_at (updated_at
versions a transaction: it is part of its idempotency key); events: missing_key (no event_id),
unknown_user, unparseable_timestamp (occurred_at); both: malformed_record (not a JSON object, an
unknown field, a value that is neither text nor a number).
What needs the warehouse (a user or currency it does not know, a missing FX rate) is accepted and
decided there, with the batch rows: a rejected row reaches the quarantine either way.
"""

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from extract.app_database import CONTRACT_COLUMNS
from extract.contract import OPTIONAL_TABLES

TRANSACTION_COLUMNS = CONTRACT_COLUMNS["transactions"]
EVENT_COLUMNS = OPTIONAL_TABLES["events"]["events"]
COLUMNS = {"transactions": TRANSACTION_COLUMNS, "events": EVENT_COLUMNS}
# the warehouse's order (the first rule a row breaks is its quarantine rule), then the service's own
RULE_ORDER = (
    "malformed_record",
    "missing_key",
    "unparseable_timestamp",
    "created_at_in_future",
    "amount_out_of_range",
    "non_numeric_amount",
    "negative_amount",
    "unknown_currency",
    "unknown_user",
    "missing_updated_at",
)
# dbt var max_clock_skew_minutes (dbt_project.yml)
MAX_CLOCK_SKEW = dt.timedelta(minutes=60)
# numeric(28, 6) holds 22 digits before the point: a larger number is amount_out_of_range
LARGEST_AMOUNT = Decimal(10) ** 22


def as_text(value: Any) -> str | None:
    """A JSON value as the raw text column holds it; a bool, object or list is malformed."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError(
            "malformed_record", "must be text or a number, not {kind}", {"kind": type(value).__name__}
        )
    return str(value)


def key_text(value: str | None) -> str | None:
    """A key as the warehouse reads it (safe_to_key): trimmed, empty is missing."""
    return value.strip() or None if value is not None else None


def parse_timestamp(value: str | None) -> dt.datetime | None:
    """An ISO-8601 timestamp as UTC (no offset: UTC, like staging's safe_to_timestamp); None when it does not parse."""
    if value is None or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def utc_text(value: str | None) -> str:
    parsed = parse_timestamp(value)
    return parsed.isoformat() if parsed else ""


class Record(BaseModel):
    """A contract record: every value text or null; unknown fields are malformed."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def text(cls, value: Any) -> str | None:
        return as_text(value)

    # the key and the user of a transaction or an event (fields of the subclasses)
    @field_validator("transaction_id", "event_id", check_fields=False)
    @classmethod
    def has_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        if key_text(value) is None:
            raise PydanticCustomError("missing_key", "{field} is missing", {"field": info.field_name})
        return value

    @field_validator("user_id", check_fields=False)
    @classmethod
    def has_user(cls, value: str | None) -> str | None:
        if key_text(value) is None:
            raise PydanticCustomError("unknown_user", "user_id null is not a known user")
        return value

    def row(self) -> dict[str, str | None]:
        """The record as a raw row: the contract's columns, text or None."""
        return self.model_dump()


class Transaction(Record):
    transaction_id: str | None = None
    user_id: str | None = None
    amount: str | None = None
    currency: str | None = None
    status: str | None = None
    device_type: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @field_validator("created_at")
    @classmethod
    def created_in_the_past(cls, value: str | None, info: ValidationInfo) -> str | None:
        parsed = parse_timestamp(value)
        if parsed is None:
            raise PydanticCustomError(
                "unparseable_timestamp", "created_at '{raw}' is not a timestamp", {"raw": value if value else "null"}
            )
        now = (info.context or {}).get("now") or dt.datetime.now(dt.UTC)
        if parsed > now + MAX_CLOCK_SKEW:
            raise PydanticCustomError(
                "created_at_in_future",
                "created_at {created} is after the record was received ({now} UTC)",
                {"created": parsed.strftime("%Y-%m-%d %H:%M:%S"), "now": now.strftime("%Y-%m-%d %H:%M:%S")},
            )
        return value

    @field_validator("updated_at")
    @classmethod
    def has_version(cls, value: str | None) -> str | None:
        if parse_timestamp(value) is None:
            raise PydanticCustomError(
                "missing_updated_at",
                "updated_at '{raw}' is not a timestamp: it versions the transaction (its idempotency key)",
                {"raw": value if value else "null"},
            )
        return value

    @field_validator("amount")
    @classmethod
    def amount_is_a_number(cls, value: str | None) -> str | None:
        raw = "null" if value is None else value
        try:
            amount = Decimal(value.strip()) if value is not None else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite():
            raise PydanticCustomError("non_numeric_amount", "amount '{raw}' is not a number", {"raw": raw})
        if abs(amount) >= LARGEST_AMOUNT:
            raise PydanticCustomError(
                "amount_out_of_range", "amount '{raw}' is a number too large to store", {"raw": raw}
            )
        if amount < 0:
            raise PydanticCustomError("negative_amount", "amount {raw} is negative", {"raw": raw})
        return value

    @field_validator("currency")
    @classmethod
    def has_currency(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            raise PydanticCustomError("unknown_currency", "currency 'null' is not a known currency")
        return value

    def key(self) -> str:
        """The idempotency key: transaction_id and updated_at (in UTC): a transaction changes after
        insert, and each version (a new updated_at) is a new record; the same version again is not."""
        return f"{key_text(self.transaction_id)}@{utc_text(self.updated_at)}"

    def id(self) -> str:
        return key_text(self.transaction_id) or ""


class Event(Record):
    event_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    event_type: str | None = None
    device_type: str | None = None
    occurred_at: str | None = None
    properties: str | None = None

    @field_validator("properties", mode="before")
    @classmethod
    def properties_as_json(cls, value: Any) -> str | None:
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        return as_text(value)

    @field_validator("occurred_at")
    @classmethod
    def occurred_at_parses(cls, value: str | None) -> str | None:
        if parse_timestamp(value) is None:
            raise PydanticCustomError("unparseable_timestamp", "occurred_at is missing or not a timestamp")
        return value

    def key(self) -> str:
        """The idempotency key: event_id (an event never changes; a second delivery is a duplicate)."""
        return key_text(self.event_id) or ""

    def id(self) -> str:
        return self.key()


MODELS: dict[str, type[Transaction] | type[Event]] = {"transactions": Transaction, "events": Event}


class Problem(BaseModel):
    """Why a record was rejected: the field, the rule (the quarantine's rejection_rule) and a reason."""

    field: str
    rule: str
    reason: str


def validate(kind: str, value: Any, now: dt.datetime | None = None) -> Transaction | Event | list[Problem]:
    """The record of `kind` (transactions or events), or every problem it has, in RULE_ORDER."""
    if not isinstance(value, dict):
        return [Problem(field="", rule="malformed_record", reason=f"a record is a JSON object, not {json_kind(value)}")]
    try:
        return MODELS[kind].model_validate(value, context={"now": now or dt.datetime.now(dt.UTC)})
    except ValidationError as error:
        problems = [problem_of(detail) for detail in error.errors()]
    return sorted(problems, key=lambda problem: (RULE_ORDER.index(problem.rule), problem.field))


def problem_of(detail: Any) -> Problem:
    field = ".".join(str(part) for part in detail["loc"])
    rule = detail["type"]
    if rule == "extra_forbidden":
        return Problem(field=field, rule="malformed_record", reason=f"{field} is not a column of the contract")
    if rule not in RULE_ORDER:
        return Problem(field=field, rule="malformed_record", reason=f"{field}: {detail['msg']}")
    reason = detail["msg"] if rule != "malformed_record" else f"{field} {detail['msg']}"
    return Problem(field=field, rule=rule, reason=reason)


def record_id(kind: str, record: Any) -> str | None:
    """The id a record as sent carries (transaction_id or event_id), whatever else is wrong with it."""
    key = "transaction_id" if kind == "transactions" else "event_id"
    value = record.get(key) if isinstance(record, dict) else None
    return None if value is None or isinstance(value, dict | list) else str(value)


def json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(type(value), "a number")
