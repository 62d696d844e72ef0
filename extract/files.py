"""What the file sources share: settings checks, the error a bad setting raises, rejected files."""

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import fsspec
from dlt.extract.hints import make_hints
from dlt.extract.items import DataItemWithMeta
from dlt.extract.resource import with_hints
from dlt.sources.filesystem import FileItemDict


class SourceSettingError(ValueError):
    """A source setting is wrong; the message names the setting and what is wrong with it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting} {problem}")
        self.setting = setting


def local_path(bucket_url: str) -> Path | None:
    """The local folder a bucket URL names (a plain path or file://), None for remote buckets."""
    parts = urlsplit(bucket_url)
    if parts.scheme == "file":
        return Path(parts.netloc + parts.path)
    if parts.scheme == "" or len(parts.scheme) == 1:  # a plain path (or a Windows drive letter)
        return Path(bucket_url)
    return None


def require_bucket(setting: str, bucket_url: str) -> None:
    """Fail with the setting's name when a local bucket folder does not exist.

    Remote buckets (s3://, gs://, ...) are checked by their own client when listed: a missing
    bucket fails there, while an existing prefix without files is simply empty.
    """
    if not bucket_url:
        raise SourceSettingError(setting, "is empty")
    path = local_path(bucket_url)
    if path is not None:
        if not path.is_dir():
            raise SourceSettingError(setting, f"= {bucket_url!r}: no such folder")
        return
    protocol = urlsplit(bucket_url).scheme
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError as error:
        raise SourceSettingError(setting, f"= {bucket_url!r}: unknown protocol {protocol!r}") from error
    except ImportError as error:
        raise SourceSettingError(setting, f"= {bucket_url!r}: {error}") from error


# Files a source cannot read are not loaded: each gets a row in `raw_<source>.rejected_files` with
# its path and the reason, and the rows of the other files load. A file read well later (fixed and
# uploaded again) deletes its row there: every file a page lists sends a row, the readable ones with
# `is_readable` true, dlt's `hard_delete` hint: the merge removes that path's row instead of storing it.
REJECTED_FILES_TABLE = "rejected_files"
REJECTED_FILES_HINTS = make_hints(
    table_name=REJECTED_FILES_TABLE,
    write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    primary_key="path",
    merge_key="path",  # set, so the resource's own merge key does not carry over to this table
    columns=[
        {"name": "path", "data_type": "text", "nullable": False},
        {"name": "reason", "data_type": "text"},
        {"name": "size", "data_type": "bigint"},
        {"name": "modification_date", "data_type": "timestamp"},
        {"name": "is_readable", "data_type": "bool", "hard_delete": True},
    ],
)
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class RejectedFile:
    """A file that cannot be read as the contract says, and why (one line)."""

    path: str
    reason: str


def rejection(path: str, error: BaseException) -> RejectedFile:
    """The file at `path` rejected for `error`: its first line, at most MAX_REASON_CHARS characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[0] if lines else type(error).__name__
    return RejectedFile(path, reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "...")


def rejected_files_rows(files: list[FileItemDict], rejected: list[RejectedFile]) -> DataItemWithMeta:
    """The `rejected_files` rows of one listing page: a reason for each rejected file, and
    `is_readable` for the others (which deletes an earlier rejection of the same path)."""
    reasons = {file.path: file.reason for file in rejected}
    rows = [
        {
            "path": file["relative_path"],
            "reason": reasons.get(file["relative_path"]),
            "size": file["size_in_bytes"],
            "modification_date": file["modification_date"],
            "is_readable": file["relative_path"] not in reasons,
        }
        for file in files
    ]
    return with_hints(rows, REJECTED_FILES_HINTS, create_table_variant=True)
