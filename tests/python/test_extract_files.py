"""Event stream and chargeback files from a real folder through dlt's filesystem source.

The demo is generated as of one day, loaded, generated again three days later (new event
batches; the current week's chargeback file has grown) and loaded again: the second run reads
only the new and the changed files, and the raw tables hold every row exactly once. Files that
cannot be read are rejected with a reason (raw_<source>.rejected_files) while the others load.
"""

import time
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from extract_support import Workspace, workspace

from demo.generate import generate
from extract.bucket_files import read_chargeback_file
from extract.load import load_source

SEED = 5
SCALE = 2_000
FIRST_DAY = date(2026, 3, 18)
SECOND_DAY = date(2026, 3, 21)  # the file of the week of 2026-03-16 gains reports on 03-20
GROWING_FILE = "reported_date=2026-03-16/chargebacks.csv"


def event_files(space: Workspace) -> dict[str, int]:
    """Rows per micro-batch file, by path relative to the events folder."""
    root = space.demo_dir / "events"
    return {path.relative_to(root).as_posix(): pq.read_metadata(path).num_rows for path in root.rglob("*.parquet")}


def chargeback_rows(space: Workspace) -> Counter[tuple[str, str, str, str]]:
    """Every row of every chargeback file, with the file it is in."""
    root = space.demo_dir / "bucket" / "chargebacks"
    rows: Counter[tuple[str, str, str, str]] = Counter()
    for path in root.rglob("chargebacks.*"):
        table = read_chargeback_file(path.name, path.read_bytes())
        for row in table.to_pylist():
            rows[(row["transaction_id"], row["reported_at"], row["reason"], path.relative_to(root).as_posix())] += 1
    return rows


def distinct_event_ids(space: Workspace) -> set[str]:
    root = space.demo_dir / "events"
    return {
        event_id
        for path in root.rglob("*.parquet")
        for event_id in pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    }


def test_second_run_reads_only_new_or_changed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=FIRST_DAY)
    first_files = event_files(space)
    first_chargebacks = chargeback_rows(space)
    first = {name: load_source(name) for name in ("events", "chargebacks")}
    assert first["events"].rows == {"events": sum(first_files.values())}
    assert first["chargebacks"].rows == {"chargebacks": sum(first_chargebacks.values())}

    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=SECOND_DAY)
    second_files = event_files(space)
    new_files = set(second_files) - set(first_files)
    grown = [row for row in chargeback_rows(space) if row[3] == GROWING_FILE]
    assert new_files and len(grown) > sum(1 for row in first_chargebacks if row[3] == GROWING_FILE)

    second = {name: load_source(name) for name in ("events", "chargebacks")}
    assert second["events"].rows == {"events": sum(second_files[path] for path in new_files)}
    # the grown file is read again in full; no other chargeback file changed
    assert second["chargebacks"].rows == {"chargebacks": len(grown)}

    # every delivery of every event once in raw (staging keeps the first of each event_id)
    [(events, distinct)] = space.query("select count(*), count(distinct event_id) from raw_events.events")
    assert events == sum(second_files.values()) and distinct == len(distinct_event_ids(space))
    # every chargeback row of every file once: the grown file's first version left nothing behind
    stored = Counter(
        space.query("select transaction_id, reported_at, reason, _source_file from raw_chargebacks.chargebacks")
    )
    assert stored == chargeback_rows(space)

    third = {name: load_source(name) for name in ("events", "chargebacks")}
    assert third["events"].rows == {} and third["chargebacks"].rows == {}


BAD_CHARGEBACK_FILES = {
    "bad/empty.csv": b"",
    "bad/corrupt.parquet": b"PAR1 this is not a parquet file",
    "bad/extra_field.csv": b"transaction_id,reported_at,reason\n1,2026-03-01,fraud,surplus\n",
    "bad/missing_column.csv": b"transaction_id,reported_at\n1,2026-03-01\n",
    "bad/not_utf8.csv": b"transaction_id,reported_at,reason\n1,2026-03-01,fr\xffaud\n",
    "bad/type_change.jsonl": (
        b'{"transaction_id": 1, "reported_at": "2026-03-01", "reason": "fraud"}\n'
        b'{"transaction_id": "x1", "reported_at": "2026-03-01", "reason": "fraud"}\n'
    ),
}


def test_unreadable_files_are_rejected_with_a_reason_and_the_rest_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = workspace(tmp_path, monkeypatch)
    generate(space.demo_dir, seed=SEED, scale=SCALE, as_of=FIRST_DAY)
    good_chargebacks = chargeback_rows(space)
    good_events = event_files(space)
    chargebacks_dir = space.demo_dir / "bucket" / "chargebacks"
    for name, content in BAD_CHARGEBACK_FILES.items():
        (chargebacks_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (chargebacks_dir / name).write_bytes(content)
    events_dir = space.demo_dir / "events"
    (events_dir / "bad").mkdir()
    (events_dir / "bad" / "corrupt.parquet").write_bytes(b"PAR1 truncated")
    [some_batch] = [path for path in events_dir.rglob("*.parquet") if path.parent.name != "bad"][:1]
    pq.write_table(pq.read_table(some_batch).drop_columns(["event_id"]), events_dir / "bad" / "no_event_id.parquet")

    loads = {name: load_source(name) for name in ("events", "chargebacks")}

    # the readable files load in full
    assert loads["chargebacks"].rows == {"chargebacks": sum(good_chargebacks.values())}
    assert loads["events"].rows == {"events": sum(good_events.values())}
    stored = Counter(
        space.query("select transaction_id, reported_at, reason, _source_file from raw_chargebacks.chargebacks")
    )
    assert stored == good_chargebacks
    # each unreadable file has a row with its path, size and a reason, and the output says so
    rejected = {
        path: (reason, size)
        for path, reason, size in space.query("select path, reason, size from raw_chargebacks.rejected_files")
    }
    assert {path: size for path, (_, size) in rejected.items()} == {
        name: len(content) for name, content in BAD_CHARGEBACK_FILES.items()
    }
    assert all(reason and "\n" not in reason for reason, _ in rejected.values()), rejected
    assert "Expected 3 columns, got 4" in rejected["bad/extra_field.csv"][0]
    assert "invalid UTF8" in rejected["bad/not_utf8.csv"][0]
    assert "changed from number to string" in rejected["bad/type_change.jsonl"][0]
    assert "6 file(s) rejected, see raw_chargebacks.rejected_files" in loads["chargebacks"].describe()
    assert dict(space.query("select path, reason from raw_events.rejected_files")) == {
        "bad/corrupt.parquet": dict(loads["events"].rejected_files)["bad/corrupt.parquet"],
        "bad/no_event_id.parquet": "lacks the contract's columns ['event_id']",
    }

    # a rejected file fixed and delivered again loads, and its rejection is gone
    time.sleep(0.01)  # a later modification date than the last loaded file's
    (chargebacks_dir / "bad" / "extra_field.csv").write_bytes(
        b"transaction_id,reported_at,reason\n1,2026-03-01,fraud\n"
    )
    again = load_source("chargebacks")
    assert again.rows == {"chargebacks": 1} and again.rejected_files == []
    assert set(dict(space.query("select path, reason from raw_chargebacks.rejected_files"))) == set(
        BAD_CHARGEBACK_FILES
    ) - {"bad/extra_field.csv"}
