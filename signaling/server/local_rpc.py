"""Placement and framing for the SFU worker processes of one ``switchboard serve --sfu-workers N``.

No I/O here (unit-tested without processes or sockets):

- :class:`LocalRegistry` is the node registry of one machine, in memory: the workers are its
  SFU nodes, alive exactly while their socket is connected. It places rooms with the cluster's
  own policy (:func:`signaling.cluster.registry.choose_node`) and the same stickiness rules as
  :meth:`signaling.cluster.registry.NodeRegistry.place`, so :class:`~signaling.cluster.remote_media.
  RemoteMedia` drives it unchanged (failover watcher included).
- The link frames: one line per message on the worker's Unix socket, a one-letter tag, then the
  payload. Requests and replies carry exactly the JSON of :mod:`signaling.core.sfu_rpc` (the same
  messages as the Redis Streams of a cluster).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any, Final, Literal, cast

from signaling.cluster.registry import NodeInfo, NodeKind, choose_node
from signaling.core.errors import PeerError

# -- placement ---------------------------------------------------------------------------------------


class LocalRegistry:
    """Room -> worker placement in memory; the :class:`~signaling.cluster.remote_media.Placement` of a
    single machine. The worker pool adds a node when its worker says hello and removes it when
    the worker's socket closes (the worker died or was stopped)."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._placement: dict[str, str] = {}

    # -- the pool's side -----------------------------------------------------------------------

    def add(self, info: NodeInfo) -> None:
        self._nodes[info.id] = info

    def remove(self, node_id: str) -> None:
        """The node is gone: its rooms keep their (dead) placement until someone places them
        again, exactly as in Redis, so the failover watcher sees them and moves them."""
        self._nodes.pop(node_id, None)

    def update(self, node_id: str, *, load: float | None = None, draining: bool | None = None) -> None:
        info = self._nodes.get(node_id)
        if info is None:
            return
        if load is not None:
            info = replace(info, load=load)
        if draining is not None:
            info = replace(info, draining=draining)
        self._nodes[node_id] = info

    def rooms_on(self, node_id: str) -> set[str]:
        return {room for room, node in self._placement.items() if node == node_id}

    # -- Placement -----------------------------------------------------------------------------

    async def place(self, room: str, *, away_from: str | None = None) -> str | None:
        return self.place_now(room, away_from=away_from)

    def place_now(self, room: str, *, away_from: str | None = None) -> str | None:
        """As :meth:`NodeRegistry.place`: the current node while it lives (unless it is
        ``away_from`` and another node can take the room), else the least-loaded live one."""
        current = self._placement.get(room)
        if current is not None and current != away_from and current in self._nodes:
            return current
        counts = Counter(self._placement.values())
        choice = choose_node([n for n in self._nodes.values() if n.id != away_from], counts)
        if choice is None:
            return current if current is not None and current in self._nodes else None
        self._placement[room] = choice
        return choice

    async def placement(self, room: str) -> str | None:
        return self._placement.get(room)

    async def nodes(self, kind: NodeKind | None = None) -> list[NodeInfo]:
        return sorted((n for n in self._nodes.values() if kind is None or n.kind == kind), key=lambda n: n.id)

    async def release(self, room: str) -> str | None:
        return self._placement.pop(room, None)

    async def close(self, *, deregister: bool = True) -> None:
        """Nothing to close: the registry lives and dies with the serve process."""


# -- link frames -------------------------------------------------------------------------------------

#: Parent -> worker: one :class:`~signaling.core.sfu_rpc.Request` (its JSON).
REQUEST: Final = "R"
#: Worker -> parent: the worker is up (payload: its node id).
HELLO: Final = "H"
#: Worker -> parent: one :class:`~signaling.core.sfu_rpc.Reply` (its JSON).
REPLY: Final = "P"
#: Worker -> parent: a message of the SFU for a client, ``[peer, message]``.
EMIT: Final = "E"
#: Worker -> parent: the rooms it hosts now (its load).
LOAD: Final = "L"
#: Worker -> parent: it drains (SIGTERM): no new rooms; its rooms move while it still forwards.
DRAIN: Final = "D"

Tag = Literal["R", "H", "P", "E", "L", "D"]
TAGS: Final = frozenset({REQUEST, HELLO, REPLY, EMIT, LOAD, DRAIN})

#: Bound of one frame (an SDP with many m-lines stays far below it).
MAX_FRAME: Final = 4 * 1024 * 1024


class FrameError(PeerError, ValueError):
    """A line on a worker link that is not a frame (dropped and logged by the reader)."""


def frame(tag: Tag, payload: str) -> bytes:
    """One frame. Payloads are JSON or ids: they never contain a raw newline."""
    if "\n" in payload:
        raise ValueError("a frame payload cannot contain a newline")
    return f"{tag}{payload}\n".encode()


def emit_frame(peer: str, message: dict[str, Any]) -> bytes:
    return frame(EMIT, json.dumps([peer, message], separators=(",", ":")))


def parse(line: bytes) -> tuple[Tag, str]:
    """The tag and payload of one line (its newline included or not)."""
    text = line.decode("utf-8", errors="strict").rstrip("\n")
    if not text or text[0] not in TAGS:
        raise FrameError(f"unknown frame {text[:40]!r}")
    return cast("Tag", text[0]), text[1:]


def parse_emit(payload: str) -> tuple[str, dict[str, Any]]:
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise FrameError(f"emit: not JSON: {exc}") from None
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str) and isinstance(data[1], dict)):
        raise FrameError("emit: expected [peer, message]")
    return data[0], data[1]
