"""What the pipeline prints: one line per event, flushed at once, and number formats shared by every command."""

import datetime as dt
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
pinned: list[TextIO] = []


def log(message: str) -> None:
    print(message, file=pinned[-1] if pinned else sys.stdout, flush=True)


@contextmanager
def pinned_output() -> Iterator[None]:
    """`log` keeps writing to today's stdout while the block redirects stdout elsewhere (`pipeline
    run` sends the tools' own output, dbt's log lines that dagster-dbt echoes, to a file)."""
    pinned.append(sys.stdout)
    try:
        yield
    finally:
        pinned.pop()


def plain(text: str) -> str:
    """`text` without terminal colour codes (dbt colours its unit-test diffs)."""
    return ANSI.sub("", text)


def first_line(text: str, width: int = 200) -> str:
    """The first non-empty line of `text`, without colour codes, cut to `width` characters."""
    lines = [line.strip() for line in plain(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def seconds(value: float) -> str:
    """12.3 s, 4 min 05 s, 2 h 03 min."""
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def age(value: float) -> str:
    """A lag in the largest sensible unit: 45 s, 12 min, 3.5 h, 2.0 days."""
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} days"


def timestamp(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
