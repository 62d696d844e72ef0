"""One-line explanations of why a source failed, naming the source and the setting to fix.

dlt wraps what went wrong in a few layers (a failed pipeline step, a failed resource, ...); the
explanation looks through the chain for the cause a user can act on: a missing or malformed
setting, a database that cannot be reached, an API that refuses the token, a missing bucket.
"""

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import dlt
import requests
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationValueError,
    InvalidNativeValue,
)
from dlt.common.configuration.specs import RuntimeConfiguration
from dlt.common.schema.exceptions import DataValidationError

from extract.files import SourceSettingError

# each source's dlt config section, and the setting that says where its data is
CONFIG_SECTIONS = {"app": "app_database", "events": "event_stream", "fx": "fx_api", "chargebacks": "bucket_files"}
LOCATION_SETTINGS = {"app": "credentials", "events": "bucket_url", "fx": "base_url", "chargebacks": "bucket_url"}


class ExtractError(RuntimeError):
    """A source could not be loaded; the message (one line) names the source and the reason."""


def setting(source: str, key: str) -> str:
    """The dotted name of a source's setting, e.g. `sources.fx_api.token`."""
    return f"sources.{CONFIG_SECTIONS[source]}.{key}"


def env_name(dotted: str) -> str:
    """The environment variable that sets a dotted setting: `SOURCES__FX_API__TOKEN`."""
    return dotted.upper().replace(".", "__")


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it (`raise ... from`, or dlt's `exception` attribute), outermost first.

    Implicit contexts (an error raised while another was handled) are not followed: they are
    often an unrelated lookup that failed and was dealt with.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "exception", None)
        current = current.__cause__ or (wrapped if isinstance(wrapped, BaseException) else None)


def first_line(error: BaseException) -> str:
    """The first non-empty line of the error's message, or its type's name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# "field `credentials` is itself a configuration `AwsCredentials` with missing field(s): `a`, `b`"
NESTED_MISSING = re.compile(r"field `(\w+)` is itself a configuration `\w+` with missing field\(s\): (.*)")
ERRNO_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def missing_fields(error: ConfigFieldMissingException) -> list[str]:
    """The missing fields, credentials spelled out (`credentials.aws_access_key_id`)."""
    nested = {match.group(1): re.findall(r"`(\w+)`", match.group(2)) for match in NESTED_MISSING.finditer(str(error))}
    fields = [field for field in error.fields if field != "local_dir"] or list(error.fields)  # dlt-internal
    return [f"{field}.{inner}" for field in fields for inner in nested.get(field, [])] or fields


def explain_missing(source: str, error: ConfigFieldMissingException) -> str:
    """A missing setting: name it and where it can be set."""
    names = [setting(source, field) for field in missing_fields(error)]
    where = ", ".join(f"{name} (env {env_name(name)})" for name in names)
    return f"{source}: missing setting {where}: set it in .dlt/config.toml, .dlt/secrets.toml or the environment"


def explain_unreachable(source: str, error: requests.RequestException) -> str:
    """The API's host did not answer: name the URL and the network's reason."""
    location = setting(source, "base_url")
    url = urlsplit(error.request.url) if error.request is not None and error.request.url else None
    where = f"{url.scheme}://{url.netloc}" if url else "the API"
    found = ERRNO_REASON.search(str(error))
    reason = found.group(1).strip() if found else type(error).__name__
    return f"{source}: cannot reach {where} (setting {location}): {reason}"


def request_attempts() -> int:
    """How many times dlt's HTTP client sends a request before giving up (`runtime.request_max_attempts`)."""
    configured = dlt.config.get("runtime.request_max_attempts")
    return int(configured) if configured is not None else RuntimeConfiguration.request_max_attempts


def explain_http(source: str, error: requests.HTTPError) -> str:
    """An HTTP error answer: a refused token, an API that stayed busy or down, or a URL it does not serve."""
    response = error.response
    status = f"{response.status_code} {response.reason}" if response is not None else "an HTTP error"
    if response is not None and response.status_code in (401, 403):
        return f"{source}: the API refused the bearer token in {setting(source, 'token')} ({status})"
    if response is not None and (response.status_code == 429 or response.status_code >= 500):
        return (
            f"{source}: the API at {setting(source, 'base_url')} kept answering {status} "
            f"(overloaded or down) through {request_attempts()} attempts "
            "(runtime.request_max_attempts): a transient error, try again later"
        )
    return f"{source}: the API at {setting(source, 'base_url')} answered {status}: check the URL"


def explain_cause(source: str, cause: BaseException) -> str | None:
    """A one-line explanation when `cause` is one a user can act on, else None."""
    import sqlalchemy.exc as sa_exc  # only when explaining a failure: a CLI run need not import SQLAlchemy

    location = setting(source, LOCATION_SETTINGS[source])
    if isinstance(cause, SourceSettingError):
        return f"{source}: {cause}"
    if isinstance(cause, ConfigFieldMissingException):
        return explain_missing(source, cause)
    if isinstance(cause, DataValidationError):
        return (
            f"{source}: data error: {cause.table_name}.{cause.column_name} broke the frozen "
            f"{cause.schema_entity} contract (a value of a new type): fix the data at the source"
        )
    if isinstance(cause, InvalidNativeValue):
        key = setting(source, ".".join(cause.embedded_sections) or LOCATION_SETTINGS[source])
        return f"{source}: setting {key} cannot be read: {first_line(cause.inner_exception)}"
    if isinstance(cause, ConfigurationValueError):
        return f"{source}: a setting in sources.{CONFIG_SECTIONS[source]} is invalid: {first_line(cause)}"
    if isinstance(cause, sa_exc.NoSuchTableError):
        return f"{source}: table {first_line(cause)!r} not found in the database of {location} (check its schema)"
    if isinstance(cause, sa_exc.ArgumentError | sa_exc.NoSuchModuleError):
        return f"{source}: setting {location} is not a usable SQLAlchemy URL: {first_line(cause)}"
    if isinstance(cause, sa_exc.SQLAlchemyError):
        return f"{source}: cannot read the database of {location}: {first_line(cause)}"
    if isinstance(cause, requests.HTTPError):
        return explain_http(source, cause)
    if isinstance(cause, requests.exceptions.MissingSchema | requests.exceptions.InvalidURL):
        return f"{source}: setting {location} is not a URL: {first_line(cause)}"
    if isinstance(cause, requests.ConnectionError | requests.Timeout):
        return explain_unreachable(source, cause)
    if isinstance(cause, FileNotFoundError | PermissionError | NotADirectoryError):
        return f"{source}: cannot read {location}: {first_line(cause)}"
    return None


def explain(source: str, error: BaseException) -> str:
    """One line naming the source and what is wrong, instead of a stack trace."""
    chain = list(causes(error))
    for cause in reversed(chain):  # the deepest cause is the most specific
        message = explain_cause(source, cause)
        if message is not None:
            return message
    deepest = chain[-1]
    return f"{source}: {type(deepest).__name__}: {first_line(deepest)}"
