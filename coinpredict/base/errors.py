"""One base error, named exit codes.

Every failure an operator can act on is a :class:`CoinpredictError` (or a subclass) carrying the
exit code the CLI returns. Only the entry point (``coinpredict.cli.app.main``) prints them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every command (docs/exit-codes.md)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    PARTIAL = 4


class HealthCode(IntEnum):
    """Exit codes of ``status`` and ``monitor`` (monitoring-plugin convention)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


class CoinpredictError(Exception):
    """Base of every error the CLI reports as one line, then exits with ``exit_code``."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(CoinpredictError):
    """A setting has an invalid value. Raised before anything is touched."""

    exit_code = ExitCode.USAGE


class UnsafeSymbolError(ConfigError):
    """A symbol that could escape a directory, a query or line protocol."""


class StoreError(CoinpredictError):
    """InfluxDB answered with an error."""


class StoreUnavailableError(StoreError):
    """InfluxDB could not be reached at all."""


class ExchangeError(CoinpredictError):
    """Base of the errors the exchange adapter raises."""


class TemporaryExchangeError(ExchangeError):
    """Worth retrying: network trouble, 5xx, rate limits, malformed pages."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalExchangeError(ExchangeError):
    """Retrying cannot help: unknown symbol, bad request, authentication."""


class LockBusyError(CoinpredictError):
    """Another run of the same job holds its lock."""


class ArtifactError(CoinpredictError):
    """A file on disk (state, model, export) is unreadable or invalid."""
