"""How many connections a server keeps, and how long it waits for their requests.

:class:`ConnectionLimits` gathers the settings that :mod:`modelyard.server.connections`
enforces. Unless ``max_connections`` is set, the connection cap derives from the
process's open-file limit, which ``modelyard serve`` first raises to its hard limit:
accepting must never run out of file descriptors, or every new connection fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modelyard.settings import Settings

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "RESERVED_FILES",
    "ConnectionLimits",
    "default_max_connections",
    "open_files_limit",
    "raise_open_files_limit",
]

log = logging.getLogger("modelyard.server")

RESERVED_FILES = 64
"""File descriptors left to everything but client connections: store, disk cache, logs, SQLite, libraries."""
DEFAULT_MAX_CONNECTIONS = 4096
"""The derived connection cap never exceeds this; set ``max_connections`` for more."""


def open_files_limit() -> int | None:
    """The process's soft limit on open files, or None where it is not known or unlimited."""
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_files_limit() -> tuple[int | None, int | None]:
    """Raise the soft limit on open files to the hard limit; the soft limit before and after."""
    try:
        import resource
    except ImportError:  # not on Unix
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_files_limit()
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a hard limit above what the kernel allows
            log.warning("Could not raise the open files limit from %d to %d: %s", soft, hard, exc)
    return before, open_files_limit()


def default_max_connections(open_files: int | None) -> int:
    """The connection cap for a process allowed ``open_files`` descriptors (None: unlimited).

    Half of what is left after :data:`RESERVED_FILES`: the other half is room for the
    connections a burst brings in before the most stalled ones are closed (they are
    accepted in batches, and closed on the next turn of the event loop).
    """
    if open_files is None:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, (open_files - RESERVED_FILES) // 2))


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits one server puts on its client connections (see :mod:`modelyard.server.connections`)."""

    max_connections: int
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    request_timeout: float
    keep_alive_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings, open_files: int | None = None) -> ConnectionLimits:
        """The settings' limits; an unset ``max_connections`` derives from ``open_files`` (default: this process's)."""
        cap = settings.max_connections
        if cap is None:
            cap = default_max_connections(open_files if open_files is not None else open_files_limit())
        return cls(
            max_connections=cap,
            max_header_bytes=int(settings.max_header_bytes),
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            request_timeout=settings.request_timeout,
            keep_alive_timeout=settings.keep_alive_timeout,
        )
