"""Errors the faces turn into exit codes and task failures. Every layer may raise these
(environments and backends alike), so they live below all of them."""


class UsageError(Exception):
    """Bad input or usage: the CLI prints this one line and exits 2."""


class LaunchError(Exception):
    """A task could not be started or its environment not prepared. retryable=False for
    errors a retry cannot fix (missing image, no GPU runtime, more GPUs asked than exist)."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable
