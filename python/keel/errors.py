"""Keel's exceptions: one class per failure kind, all under KeelError.

The native core raises these by name (see bindings/bind_errors.cpp); the CLI turns them into exit
codes and the HTTP server into status codes.
"""


class KeelError(Exception):
    """Base of every error Keel raises on purpose."""

    exit_code = 1


class NotFound(KeelError, LookupError):
    """A run, model, version, alias, artifact, feature view ... does not exist."""

    exit_code = 2


class AlreadyExists(KeelError):
    """Creating something whose name is taken."""

    exit_code = 3


class InvalidArgument(KeelError, ValueError):
    """A value is malformed or out of range; the message names it and what was expected."""

    exit_code = 4


class Conflict(KeelError):
    """The request contradicts stored state (an immutable param logged twice with another value, ...)."""

    exit_code = 5


class Corrupt(KeelError):
    """Stored data failed verification (checksum mismatch, truncated file, unknown format version)."""

    exit_code = 6


class PermissionDenied(KeelError, PermissionError):
    """The caller's role lacks a grant (PII columns), or the file system refused."""

    exit_code = 7


class PluginError(KeelError):
    """A Lua plugin failed to load or run; the message names its file and line."""

    exit_code = 8


class Internal(KeelError):
    """A bug in Keel: please report it with the message."""

    exit_code = 9


class Unavailable(KeelError):
    """A server Keel depends on (S3, PostgreSQL, Redis) cannot be reached or keeps failing: retry later."""

    exit_code = 10


__all__ = ["KeelError", "NotFound", "AlreadyExists", "InvalidArgument", "Conflict", "Corrupt",
           "PermissionDenied", "PluginError", "Internal", "Unavailable"]
