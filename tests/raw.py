"""A raw WebSocket test client: exactly the frames we write, nothing the SDK would fix for us."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.conftest import PATIENCE


class Raw:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def connect(cls, url: str) -> Raw:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, autoping=True)
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    @classmethod
    async def joined(cls, url: str, room: str = "room", name: str = "", **extra: Any) -> Raw:
        raw = await cls.connect(url)
        await raw.send({"type": "join", "room": room, "name": name, **extra})
        raw.welcome = await raw.expect("welcome")
        return raw

    @property
    def peer(self) -> str:
        return str(self.welcome["peer"])

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def recv(self, timeout: float = PATIENCE, *, skip_pings: bool = True) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed: {msg.type} code={self.ws.close_code}")
                data: dict[str, Any] = json.loads(msg.data)
                if skip_pings and data["type"] == "ping":
                    continue
                return data

    async def expect(self, kind: str, timeout: float = PATIENCE) -> dict[str, Any]:
        """The next non-ping message, which must be of ``kind``."""
        message = await self.recv(timeout)
        assert message["type"] == kind, message
        return message

    async def closed(self, timeout: float = PATIENCE) -> int | None:
        """Read until the server closes; return the close code."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                    return self.ws.close_code

    async def close(self) -> None:
        """Close the socket (bounded: the server may be gone or blackholed) and the session."""
        try:
            async with asyncio.timeout(PATIENCE / 4):
                await self.ws.close()
        except (TimeoutError, ConnectionError):
            pass  # closing the session below tears the connection down
        await self.http.close()
