"""Settings checks shared by the sources, and the error a bad setting raises."""

from pathlib import Path
from urllib.parse import urlsplit

import fsspec


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
