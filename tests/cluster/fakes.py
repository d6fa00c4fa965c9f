"""An SFU stand-in for the RPC tests: no aiortc, every call recorded, calls held on demand."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from sfu.errors import SfuError
from signaling.backend.media import Emit


class FakeSfu:
    """Records calls in the order they *finish*; ``gates`` hold a call until the test opens them.

    ``log`` (shared with the test, e.g. with what an ``emit`` saw) orders calls against other
    events; ``emit`` is the node's channel to clients, as the real SFU gets it.
    """

    def __init__(self, emit: Emit | None = None, log: list[tuple[str, str]] | None = None) -> None:
        self.emit = emit
        self.log = log if log is not None else []
        self.done: list[tuple[str, str, str]] = []
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.joined: set[tuple[str, str]] = set()
        #: The ``subscribe`` flag of each participant's latest join.
        self.subscribe: dict[str, bool] = {}

    async def _step(self, op: str, room: str, participant: str) -> None:
        gate = self.gates.get((op, participant))
        if gate is not None:
            await gate.wait()
        self.done.append((op, room, participant))
        self.log.append((op, participant))

    async def join(self, room: str, participant: str, *, subscribe: bool = True) -> None:
        await self._step("join", room, participant)
        self.joined.add((room, participant))
        self.subscribe[participant] = subscribe

    async def publish(self, room: str, participant: str, sdp: str) -> str:
        if (room, participant) not in self.joined:
            raise SfuError("not-joined", f"{participant} has not joined {room}")
        if sdp == "boom":
            raise RuntimeError("aiortc exploded")
        await self._step("publish", room, participant)
        return f"answer to {sdp}"

    async def subscriber_answer(self, room: str, participant: str, sdp: str) -> None:
        await self._step("subscriber_answer", room, participant)

    async def add_candidate(
        self, room: str, participant: str, target: Literal["publisher", "subscriber"], candidate: dict[str, Any] | None
    ) -> None:
        await self._step("add_candidate", room, participant)

    async def unpublish(self, room: str, participant: str, track_id: str) -> None:
        raise SfuError("unknown-track", f"no track {track_id}")

    async def mute(self, room: str, participant: str, track_id: str, muted: bool) -> None:
        await self._step("mute", room, participant)

    async def leave(self, room: str, participant: str) -> None:
        await self._step("leave", room, participant)
        self.joined.discard((room, participant))

    async def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}
