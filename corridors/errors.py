"""sendcost's exception hierarchy, documented in one place.

SendcostError
├── ConfigError        config.toml or the environment is wrong (names the key)
├── DatabaseError      the database cannot be reached, or the URL is malformed
├── BadPeriod          a period string is not a quarter or a month
├── ImportFileError    an import file is corrupt or truncated (names the line)
├── DownloadError      a file to import could not be downloaded (network, status, checksum)
│   └── DownloadRefused    the site answered, but refuses this client: download by hand
├── UnknownLabel       an upstream label has no explicit mapping
├── NoData             nothing to compute for the asked period / corridor
└── CollectError       a source failed (see collector.errors for kinds)
"""

from __future__ import annotations


class SendcostError(Exception):
    """Base of every error sendcost raises on purpose."""


class ConfigError(SendcostError):
    pass


class DatabaseError(SendcostError):
    pass


class BadPeriod(SendcostError, ValueError):
    pass


class ImportFileError(SendcostError):
    def __init__(self, message: str, *, line: int | None = None, path: str | None = None):
        where = ""
        if path:
            where += f"{path}"
        if line is not None:
            where += f" line {line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.line = line
        self.path = path


class DownloadError(SendcostError):
    pass


class DownloadRefused(DownloadError):
    pass


class UnknownLabel(SendcostError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NoData(SendcostError):
    pass


class CollectError(SendcostError):
    pass
