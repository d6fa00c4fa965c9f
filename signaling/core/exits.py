"""Exit codes of the command-line tools (``switchboard admin``, ``switchboard loadtest``)."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    """Exit codes of ``switchboard admin`` (and ``switchboard loadtest``)."""

    OK = 0
    #: The room, participant, session or node does not exist (or no admin API at that URL).
    NOT_FOUND = 1
    #: Bad command line (click's own code for usage errors).
    USAGE = 2
    #: The server refused the token (401/403).
    UNAUTHORIZED = 3
    #: No answer: connection refused, DNS failure, timeout, TLS failure.
    UNREACHABLE = 4
    #: The server failed (5xx) or answered something unexpected.
    SERVER_ERROR = 5
