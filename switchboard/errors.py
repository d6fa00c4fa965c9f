"""The media SDK's exceptions: one root, and the reason a room ended carried as data."""

from __future__ import annotations


class RoomError(Exception):
    """Root of every error the media SDK raises."""


class ConnectError(RoomError):
    """The room could not be joined (refused token, unreachable server, ...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        #: The WebSocket close code that ended the attempt (4001 unauthorized, 4003 forbidden...).
        self.code = code


class Disconnected(RoomError):
    """The room ended for good: a fatal close code (4001, 4003, 4006 kicked, 4010, 4012) or
    ``close()``. ``code`` says which; reconnecting is the application's decision."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def kicked(self) -> bool:
        return self.code == 4006


class RequestError(RoomError):
    """The server refused a request of ours (``error`` naming its cseq)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
