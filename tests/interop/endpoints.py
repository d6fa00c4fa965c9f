"""Third-party media clients as subprocesses, with signaling bridged through the test process.

GStreamer (Debian's python3 with ``gi``) and node with ``@roamhq/wrtc`` have no usable WebSocket
client here, so each runs as a subprocess speaking JSON lines: server messages go to its stdin,
the client messages it writes on stdout are sent by a real :class:`signaling.client.Client` (which
adds ``cseq``, acks, answers pings and resumes). The client reaches the server through its unix
socket, so the media process can live in the loopback-only network namespace while the bridge
does not. Lines whose type starts with ``x-`` are the process's own reports (stats, logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from signaling.client import Client, ErrorReceived, Joined, ServerMessage

#: Server messages the media process needs (the rest stays in the bridge).
_FORWARDED = {"publish-answer", "subscriber-offer", "error", "track-unavailable", "publish-layers"}


@dataclass
class MediaProcess:
    """One third-party client: its process, its signaling session, what it reported."""

    name: str
    process: asyncio.subprocess.Process
    client: Client
    log_path: Path
    joined_at: float = 0.0
    peer_id: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    #: Every server message the session received (SFU messages, errors), in order.
    messages: list[dict[str, Any]] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- waiting ---------------------------------------------------------------------------------

    async def wait(self, predicate: Any, timeout: float, what: str) -> None:
        """Wait until ``predicate(self)`` holds (re-checked on every report), bounded."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    if self.process.returncode is not None:
                        raise AssertionError(f"{self.name} exited with {self.process.returncode}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: timed out waiting for {what}\nstats={self.stats}\nstates={self.states}\n"
                f"messages={[m.get('type') + ':' + str(m.get('code', '')) for m in self.messages]}\n"
                f"log tail={self.lines[-15:]}"
            ) from None

    def video_frames(self, mid: str | None = None) -> int:
        video: dict[str, int] = self.stats.get("video", {})
        return video.get(mid, 0) if mid is not None else sum(video.values())

    def audio_buffers(self) -> int:
        return sum(self.stats.get("audio", {}).values())

    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "error"]

    async def fps(self, seconds: float, mid: str | None = None) -> float:
        """Decoded video frames per second over the next ``seconds`` (wall clock of reports)."""
        await self.wait(lambda s: "t" in s.stats, 30, "a stats report")
        start_frames, start_t = self.video_frames(mid), self.stats["t"]
        await self.wait(lambda s: s.stats["t"] - start_t >= seconds, seconds + 30, f"{seconds}s of stats")
        return (self.video_frames(mid) - start_frames) / (self.stats["t"] - start_t)

    def first_frame_ms(self) -> int | None:
        """Join (welcome) to the first decoded remote video frame, in ms."""
        firsts = [t for mid, t in self.stats.get("first_frame", {}).items() if mid in self.stats.get("video", {})]
        return round((min(firsts) - self.joined_at) * 1000) if firsts else None

    # -- plumbing --------------------------------------------------------------------------------

    async def _pump_server(self) -> None:
        async for event in self.client:
            message: dict[str, Any] | None = None
            if isinstance(event, ServerMessage):
                message = event.message
            elif isinstance(event, ErrorReceived):
                message = {"type": "error", "code": event.code, "message": event.message, "cseq": event.cseq,
                           "target": event.target}
            if message is None:
                continue
            self.messages.append(message)
            self._note(f"<- {message.get('type')}" + (f" {message}" if message.get("type") == "error" else ""))
            self._changed.set()
            if message.get("type") in _FORWARDED and self.process.stdin is not None:
                self.process.stdin.write((json.dumps(message) + "\n").encode())
                with contextlib.suppress(ConnectionError):
                    await self.process.stdin.drain()

    def _note(self, text: str) -> None:
        """One timestamped line in the process's log (the server's side of the conversation)."""
        with self.log_path.open("a") as log:
            log.write(f"{time.monotonic():.3f} {text}\n")

    async def _pump_process(self) -> None:
        assert self.process.stdout is not None
        with self.log_path.open("a") as log:
            while line := await self.process.stdout.readline():
                text = line.decode(errors="replace").strip()
                if not text.startswith("{"):
                    log.write(text + "\n")
                    self.lines.append(text)
                    continue
                message = json.loads(text)
                kind = message.get("type", "")
                if kind == "x-stats":
                    self.stats = message
                elif kind == "x-state":
                    self.states.append((message["target"], message["state"]))
                    log.write(f"{time.monotonic():.3f} state {message['target']} {message['state']}\n")
                elif kind.startswith("x-"):
                    log.write(text + "\n")
                    self.lines.append(text)
                else:
                    detail = f" {message.get('target')} {message.get('candidate')}" if kind == "candidate" else ""
                    log.write(f"{time.monotonic():.3f} -> {kind}{detail}\n")
                    await self.client.send(message)
                self._changed.set()
        self._changed.set()

    async def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.process.stdin.write(b'{"type": "x-quit"}\n')
                self.process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.client.leave()
        await self.client.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _open_log(path: Path, header: str) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header)
    return path.open("ab")  # O_APPEND: the child's stderr and our own lines interleave safely


async def start_media_process(
    argv: list[str],
    *,
    unix_path: Path | None,
    room: str,
    name: str,
    log_path: Path,
    http: aiohttp.ClientSession,
    codecs: list[str] | None = None,
    url: str = "ws://switchboard/ws",
) -> MediaProcess:
    """Join ``room`` as ``name`` at ``url`` through ``http`` (by default the server's unix
    socket, ``unix_path``: ``http`` is bound to it), then start ``argv``."""
    client = Client(url, room, name=name, session=http, codecs=codecs)
    await client.connect()
    joined_at = time.time()
    try:
        event = await client.next_event()
        assert isinstance(event, Joined), event
        stderr = _open_log(log_path, f"# {' '.join(argv)}\n")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )
        finally:
            stderr.close()
    except BaseException:
        await client.close()
        raise
    endpoint = MediaProcess(name, process, client, log_path, joined_at=joined_at, peer_id=event.peer)
    loop = asyncio.get_running_loop()
    endpoint._tasks = [
        loop.create_task(endpoint._pump_server(), name=f"bridge-in:{name}"),
        loop.create_task(endpoint._pump_process(), name=f"bridge-out:{name}"),
    ]
    return endpoint
