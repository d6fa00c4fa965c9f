"""The SFU as the hub sees it: the calls signaling makes for media, whatever runs them.

In the embedded default the in-process ``sfu.Sfu`` satisfies this protocol; in a cluster
``signaling.cluster.remote_media.RemoteMedia`` forwards the same calls to the SFU node that holds the
room. A refusal is one of :data:`MEDIA_REFUSALS`, both typed with a ``code`` (``bad-sdp``,
``sfu-error``, ``unknown-track``, ``not-joined``, ``too-many-tracks``, ``candidate-refused``,
``sfu-unavailable``); the hub turns it into the protocol error of the same name. Anything else a
media call raises is a failure of ours (logged with its traceback, ``internal``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, Protocol

from sfu.errors import SfuError
from signaling.core.errors import MediaError

#: What a media call raises when the SFU refuses (each has a ``code``): the in-process SFU's own
#: error (``sfu`` never imports ``signaling``, so it cannot raise ours) and ours
#: (:class:`~signaling.core.sfu_rpc.RemoteMediaError` from a cluster's SFU node, or a refusal made
#: on this side). ``except MEDIA_REFUSALS as exc: exc.code``.
MEDIA_REFUSALS: Final = (MediaError, SfuError)

#: (participant id, server→client message without ``seq``): how the SFU talks to clients.
Emit = Callable[[str, dict[str, Any]], None]


class MediaPort(Protocol):
    async def join(
        self, room: str, participant: str, *, subscribe: bool = True, codecs: tuple[str, ...] | None = None
    ) -> None: ...
    async def publish(
        self, room: str, participant: str, sdp: str, *, tracks: list[dict[str, Any]] | None = None
    ) -> str:
        """``tracks``: ``[{id, source, muted}]`` by msid track id (``publish.tracks``)."""
        ...
    async def subscriber_answer(self, room: str, participant: str, sdp: str) -> None: ...
    async def add_candidate(
        self,
        room: str,
        participant: str,
        target: Literal["publisher", "subscriber"],
        candidate: dict[str, Any] | None,
    ) -> None: ...
    async def unpublish(self, room: str, participant: str, track_id: str) -> None: ...
    async def mute(self, room: str, participant: str, track_id: str, muted: bool) -> None: ...
    async def set_track_state(self, room: str, participant: str, track_id: str, muted: bool) -> None:
        """The publisher muted (unmuted) its own track: remember it, tell the room."""
        ...
    async def set_subscription(self, room: str, participant: str, track_id: str, quality: str) -> None:
        """The quality (simulcast layer) the participant wants of another's video track."""
        ...
    async def leave(self, room: str, participant: str) -> None: ...
    async def adopt(self, room: str, participant: str, *, subscribe: bool = True) -> None:
        """A participant whose session resumed here from another node: from now on this node
        follows its media (a cluster moves it in an SFU failover). Idempotent."""
        ...
    async def play(
        self, room: str, participant: str, sdp: str, *, peer: str | None = None, track: str | None = None
    ) -> str: ...
    async def record_start(self, room: str, *, directory: str, track: str | None = None) -> list[dict[str, Any]]: ...
    async def record_stop(self, room: str) -> list[dict[str, Any]]: ...
    async def recordings(self) -> list[dict[str, Any]]: ...
    async def close(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
