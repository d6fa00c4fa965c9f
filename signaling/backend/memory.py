"""The embedded backend: one process, state in dicts, delivery by direct call."""

from __future__ import annotations

from typing import Any

from signaling.backend.base import Backend, Delivery, Member


class MemoryBackend(Backend):
    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, Member]] = {}
        self._members: dict[str, Member] = {}
        self._deliver: Delivery | None = None

    async def start(self, node_id: str, deliver: Delivery) -> None:
        self._deliver = deliver

    async def close(self) -> None:
        self._deliver = None

    async def ready(self) -> bool:
        return self._deliver is not None

    async def add_member(self, member: Member, *, max_members: int | None = None) -> list[Member] | None:
        room = self._rooms.setdefault(member.room, {})
        if max_members is not None and len(room) >= max_members:
            if not room:
                del self._rooms[member.room]
            return None
        before = list(room.values())
        room[member.peer_id] = member
        self._members[member.peer_id] = member
        return before

    async def remove_member(self, room: str, peer_id: str) -> list[Member] | None:
        members = self._rooms.get(room)
        if members is None or members.pop(peer_id, None) is None:
            return None
        self._members.pop(peer_id, None)
        if not members:
            del self._rooms[room]
        return list(members.values())

    async def members(self, room: str) -> list[Member]:
        return list(self._rooms.get(room, {}).values())

    async def member(self, peer_id: str) -> Member | None:
        return self._members.get(peer_id)

    async def rooms(self) -> dict[str, int]:
        return {name: len(members) for name, members in self._rooms.items()}

    async def send(
        self, peer_id: str, message: dict[str, Any], *, origin: tuple[str, int] | None = None, room: str | None = None,
        once: str | None = None,
    ) -> bool:
        # One process: the hub has already de-duplicated ``origin``'s cseq, nothing to record.
        member = self._members.get(peer_id)
        if member is None or self._deliver is None or (room is not None and member.room != room):
            return False
        await self._deliver(peer_id, message, "")
        return True
