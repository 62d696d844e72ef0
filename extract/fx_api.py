"""REST API source: daily FX rates from a paginated JSON API with a bearer token.

dlt's rest_api source pages through `/v1/rates` (page numbers up to `total_pages`), asks only
for dates from the last loaded one on (incremental on `date`), and merges on (`date`,
`currency`), so a rate published again replaces the stored one. dlt's HTTP client retries 429
and 5xx answers and dropped connections with exponential backoff, honouring `Retry-After`
(`request_max_attempts`, `request_backoff_factor` in `[runtime]` of `.dlt/config.toml`).

The rates are small JSON pages, the one source that travels as dicts. Their types are frozen: a
value of another type (a text rate) fails the load with a data error instead of landing in a
side column (`rate_to_usd__v_text`) that staging would never read.
"""

from datetime import date

import dlt
from dlt.sources import DltResource
from dlt.sources.rest_api import rest_api_resources

from extract.files import SourceSettingError

# the first date asked for on a first load: early enough for any history (a later load asks from its
# last loaded date); set sources.fx_api.start_date when the API refuses dates that old
DEFAULT_START_DATE = "1900-01-01"
RATES_PATH = "v1/rates"


@dlt.source(name="fx")
def fx_api(
    base_url: str = dlt.config.value,
    token: str = dlt.secrets.value,
    page_size: int = 500,
    start_date: str = DEFAULT_START_DATE,
) -> list[DltResource]:
    """The `rates` resource of the FX API at `base_url`, authenticated with the bearer `token`.

    Args:
        base_url: the API's root, e.g. `https://fx.example.com` (the demo starts a local one).
        token: the bearer token (a secret: `.dlt/secrets.toml` or `SOURCES__FX_API__TOKEN`).
        page_size: rows asked for per page.
        start_date: the first date (YYYY-MM-DD) a first load asks for; later loads ask from the last loaded.
    """
    if not token:
        raise SourceSettingError("sources.fx_api.token", "is empty")
    try:
        start_date = date.fromisoformat(str(start_date)).isoformat()
    except ValueError as error:
        raise SourceSettingError("sources.fx_api.start_date", f"= {start_date!r} is not a YYYY-MM-DD date") from error
    resources: list[DltResource] = rest_api_resources(
        {
            "client": {
                "base_url": base_url,
                "auth": {"type": "bearer", "token": token},
                "paginator": {
                    "type": "page_number",
                    "base_page": 1,
                    "page_param": "page",
                    "total_path": "total_pages",
                },
            },
            "resources": [
                {
                    "name": "rates",
                    "primary_key": ["date", "currency"],
                    "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
                    "schema_contract": {"data_type": "freeze"},
                    "endpoint": {
                        "path": RATES_PATH,
                        "data_selector": "data",
                        "params": {
                            "page_size": page_size,
                            "start_date": {
                                "type": "incremental",
                                "cursor_path": "date",
                                "initial_value": start_date,
                            },
                        },
                    },
                }
            ],
        }
    )
    return resources
