"""REST API source: daily FX rates from a paginated JSON API with a bearer token.

dlt's rest_api source pages through `/v1/rates`, asks only for dates from the last loaded one
on (incremental on `date`), and merges on (`date`, `currency`). dlt's HTTP client retries
429 and 5xx answers with exponential backoff (see `[runtime]` in `.dlt/config.toml`).
"""

from typing import Any

import dlt
from dlt.sources import DltResource
from dlt.sources.rest_api import rest_api_resources

INITIAL_DATE = "2000-01-01"


@dlt.source(name="fx")
def fx_api(base_url: str = dlt.config.value, token: str = dlt.secrets.value, page_size: int = 500) -> Any:
    """The `rates` resource of the FX API at `base_url`, authenticated with the bearer `token`."""
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
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "v1/rates",
                        "data_selector": "data",
                        "params": {
                            "page_size": page_size,
                            "start_date": {
                                "type": "incremental",
                                "cursor_path": "date",
                                "initial_value": INITIAL_DATE,
                            },
                        },
                    },
                }
            ],
        }
    )
    return resources


