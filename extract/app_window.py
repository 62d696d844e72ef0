"""The read window of an app table: a cursor on `updated_at` bounded by the clock, with a lookback.

dlt's `incremental` keeps the greatest `updated_at` it has seen, so one row dated 2099 would stop
every later change from loading; its `end_value` bounds the range but makes the cursor stateless
(and turns `lag` off). So the app source keeps its own cursor in dlt's resource state:

* the cursor is the greatest `updated_at` at most `now + max_clock_skew_seconds`; a row dated
  beyond that (ahead of the clock) is loaded like any other but does not move the cursor;
* each run reads the rows with `updated_at >= cursor - lookback_seconds` (a backdated correction
  within the lookback is read), every row without `updated_at`, and every row ahead of the clock;
* of those, a row read before and unchanged since (the same content hash, kept in the state for
  the rows of the window) is not loaded again, unless another row with its key is: all versions of
  a key read in one run are loaded together, since the merge replaces a key's raw rows as a whole.

Timestamps compare as UTC text in ISO order (`YYYY-MM-DD HH:MM:SS`, a `T` read as a space).
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from extract.files import SourceSettingError

CURSOR_COLUMN = "updated_at"
# more rows ahead of the clock than this is a clock problem (the machine's, or a whole table written
# by a server far ahead), not skew: the source fails, rather than remember them all in its state
MAX_ROWS_AHEAD = 10_000
TEXT_FORMAT = "%Y-%m-%d %H:%M:%S"
STATE_KEY = "read_window"


def as_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """The column as ISO text (`T` between date and time read as a space); null stays null."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    return pc.replace_substring_regex(column, r"^(\d{4}-\d{2}-\d{2})T", r"\1 ")


def shifted(text: str, seconds: float) -> str:
    """An ISO timestamp text moved by `seconds` (UTC text); the text itself when it does not parse."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment + timedelta(seconds=seconds)).strftime(TEXT_FORMAT)


def row_hashes(table: pa.Table) -> list[str]:
    """A content hash of every row: its non-null values by column name (a column added to the
    table, null in the rows that were there, leaves their hashes as they were)."""
    names = table.column_names
    columns = [column.to_pylist() for column in table.columns]
    return [
        hashlib.blake2b(
            repr([(name, value) for name, value in zip(names, row, strict=True) if value is not None]).encode(),
            digest_size=8,
        ).hexdigest()
        for row in zip(*columns, strict=True)
    ]


@dataclass
class WindowReport:
    """What a run saw that it must tell: rows ahead of the clock, rows without `updated_at`."""

    table: str
    bound: str
    skew_seconds: float
    ahead: int = 0
    latest_ahead: str | None = None
    without_cursor: int = 0
    skipped_unchanged: int = 0

    def notes(self) -> list[str]:
        notes = []
        if self.ahead:
            notes.append(
                f"{self.table}: {self.ahead:,} row(s) with {CURSOR_COLUMN} after now + {self.skew_seconds:g} s "
                f"(latest {self.latest_ahead}) held back from the cursor; they are in raw"
            )
        if self.without_cursor:
            missing = f"{self.table}: {self.without_cursor:,} row(s) without {CURSOR_COLUMN}"
            notes.append(f"{missing}: in raw, cursor unmoved")
        return notes


@dataclass
class ReadWindow:
    """One run's window over a table: what to read, what to load, and the state to keep."""

    table: str
    key: str
    state: dict[str, Any]
    skew_seconds: float
    lookback_seconds: float
    cursor_column: str = CURSOR_COLUMN
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        kept = self.state.get(STATE_KEY, {})
        self.cursor: str | None = kept.get("cursor")
        self.known: dict[str, str | None] = dict(kept.get("recent", {}))
        self.bound = (self.now.astimezone(UTC) + timedelta(seconds=self.skew_seconds)).strftime(TEXT_FORMAT)
        self.latest: str | None = self.cursor  # the greatest updated_at within the bound seen so far
        self.recent: dict[str, str | None] = {}
        self.held: list[pa.Table] = []  # rows read before and unchanged: loaded only if their key is
        self.loaded_keys: list[pa.Array] = []
        self.report = WindowReport(self.table, self.bound, self.skew_seconds)

    @property
    def start(self) -> str | None:
        """The smallest `updated_at` this run reads (None: the whole table)."""
        return shifted(self.cursor, -self.lookback_seconds) if self.cursor is not None else None

    def split(self, table: pa.Table) -> pa.Table | None:
        """The rows of `table` to load now; rows loaded before and unchanged are held back for `finish`."""
        text = as_text(table[self.cursor_column])
        missing = pc.is_null(text)
        ahead = pc.fill_null(pc.greater(text, self.bound), False)
        self.note(table, missing, ahead)
        batch_latest = pc.max(pc.filter(text, pc.and_(pc.invert(missing), pc.invert(ahead)))).as_py()
        if batch_latest is not None and (self.latest is None or batch_latest > self.latest):
            self.latest = batch_latest
        # the rows the next run reads again: their hashes go into the state, to be recognised then
        rereadable = pc.or_(missing, ahead)
        if self.latest is not None:
            floor = shifted(self.latest, -self.lookback_seconds)
            rereadable = pc.or_(rereadable, pc.fill_null(pc.greater_equal(text, floor), False))
        if self.known:  # every row read may have been loaded by an earlier run
            hashes = row_hashes(table)
            flags = rereadable.to_pylist()
            values = text.to_pylist()
            self.recent.update(
                (digest, value) for digest, value, flag in zip(hashes, values, flags, strict=True) if flag
            )
            known = pa.array([digest in self.known for digest in hashes], pa.bool_())
            if pc.any(known).as_py():
                self.held.append(table.filter(known))
                table = table.filter(pc.invert(known))
        else:
            again = table.filter(rereadable)
            if again.num_rows:
                self.recent.update(zip(row_hashes(again), pc.filter(text, rereadable).to_pylist(), strict=True))
        self.remember_keys(table)
        return table if table.num_rows else None

    def note(self, table: pa.Table, missing: pa.Array, ahead: pa.Array) -> None:
        self.report.without_cursor += pc.sum(missing).as_py() or 0
        count = pc.sum(ahead).as_py() or 0
        if count:
            self.report.ahead += count
            latest = pc.max(pc.filter(table[self.cursor_column], ahead))
            value = str(latest.as_py())
            if self.report.latest_ahead is None or value > self.report.latest_ahead:
                self.report.latest_ahead = value
        if self.report.ahead > MAX_ROWS_AHEAD:
            raise SourceSettingError(
                "sources.app_database.max_clock_skew_seconds",
                f"= {self.skew_seconds:g} holds back more than {MAX_ROWS_AHEAD:,} rows of {self.table} dated after "
                f"{self.bound} UTC (now by this machine's clock, plus the skew; latest {self.report.latest_ahead}): "
                "check the clock, or raise the setting",
            )

    def remember_keys(self, table: pa.Table) -> None:
        """Keep the keys loaded, when some held rows may share them (never on a first load)."""
        if self.known and table.num_rows:
            self.loaded_keys.append(pc.cast(table[self.key], pa.string()).combine_chunks())

    def finish(self) -> Iterator[pa.Table]:
        """The held rows whose key was loaded this run (all of a key's versions go in together);
        then the state: the cursor and the hashes of the rows the next run reads again."""
        if self.held:
            held = pa.concat_tables(self.held, promote_options="default")
            if self.loaded_keys:
                loaded = pa.concat_arrays(self.loaded_keys)
                together = pc.fill_null(
                    pc.is_in(pc.cast(held[self.key], pa.string()), value_set=loaded, skip_nulls=True), False
                )
                if pc.any(together).as_py():
                    yield held.filter(together)
                held = held.filter(pc.invert(together))
            self.report.skipped_unchanged = held.num_rows
        floor = shifted(self.latest, -self.lookback_seconds) if self.latest is not None else None
        recent = {
            digest: text
            for digest, text in self.recent.items()
            if text is None or floor is None or text >= floor or text > self.bound
        }
        self.state[STATE_KEY] = {"cursor": self.latest, "recent": recent}
