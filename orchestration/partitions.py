"""The daily partitions every asset shares: a partition is a day, built as of its end (UTC).

`ML_FEATURES_FIRST_DAY` (YYYY-MM-DD, default 2020-01-01) is the first day a backfill can reach;
set it earlier for older data. Today is a partition too: `pipeline run` builds it.
"""

import datetime as dt
import os
import warnings

from dagster import BackfillPolicy, BetaWarning, DailyPartitionsDefinition

FIRST_DAY = os.environ.get("ML_FEATURES_FIRST_DAY", "2020-01-01")

daily = DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)
# a backfill runs one day per run, in order (each day builds on the one before); every asset says
# so (dagster-dbt's default for partitioned dbt assets is one run for the whole range), which Dagster
# still calls beta for plain assets: said here once instead of on every command
ONE_DAY_PER_RUN = BackfillPolicy.multi_run(1)
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)


def day_of(partition_key: str) -> dt.date:
    return dt.date.fromisoformat(partition_key)
