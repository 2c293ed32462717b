"""Errors the faces turn into exit codes."""


class UsageError(Exception):
    """Bad input or usage: the CLI prints this one line and exits 2."""


class PipelineError(Exception):
    """A pipeline that is valid IR but cannot be run as written (reported per task)."""
