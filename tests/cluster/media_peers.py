"""aiortc participants that follow an SFU failover, as the SDKs do.

On ``reconnect {scope: "media"}`` a participant closes its peer connection and starts over: a
publisher publishes again on a fresh one (a fresh generated track: aiortc stops a track with its
sender), a subscriber answers the next ``subscriber-offer`` on a fresh one. The signaling session
stays as it is. Offers and resets go through one queue and one task, in arrival order, so an
offer that arrives after a reset is never applied to the connection the reset dropped.

Built on tests/media/peers.py (the SDK client, loopback checks, waits) and tests/sfu (frames
numbered in the picture, decoding).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from signaling.client import Event, ServerMessage
from signaling.core.backoff import Backoff
from tests.media.peers import Participant, SignalingError, assert_loopback_only, rtc_configuration
from tests.sfu.sfu_testpeers import PatternVideoTrack, ReceivedTrack, consume_frames, force_codec

#: Frame numbers of a publisher's n-th connection start at n * this (the picture holds 16 bits).
GENERATION_STRIDE = 10_000


def is_media_reconnect(event: Event) -> bool:
    return (
        isinstance(event, ServerMessage)
        and event.message.get("type") == "reconnect"
        and event.message.get("scope") == "media"
    )


class FailoverParticipant(Participant):
    """A participant that redoes its peer connection on ``reconnect {scope: media}``."""

    def __init__(
        self, url: str | Sequence[str], room: str, name: str, *, subscribe: bool = True, backoff: Backoff | None = None
    ) -> None:
        super().__init__(url, room, name, subscribe=subscribe, backoff=backoff)
        self._work: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=64)
        self._pc: RTCPeerConnection | None = None
        #: 0 for the first peer connection, +1 per media reconnect.
        self.generation = 0
        #: ``time.monotonic()`` of each ``reconnect {scope: media}`` received.
        self.reconnects_at: list[float] = []

    @property
    def pc(self) -> RTCPeerConnection:
        assert self._pc is not None, "start() first"
        return self._pc

    async def start(self) -> None:
        await super().start()
        self._pc = self._new_pc()
        self.tasks.spawn(self._run())

    def on_event(self, event: Event) -> None:
        if is_media_reconnect(event):
            self.reconnects_at.append(time.monotonic())
            self._work.put_nowait(("reset", {}))

    def _new_pc(self) -> RTCPeerConnection:
        return RTCPeerConnection(rtc_configuration(self.welcome["ice_servers"]))

    async def _run(self) -> None:
        while True:
            kind, message = await self._work.get()
            if kind == "reset":
                old, self._pc = self._pc, None
                if old is not None:
                    await old.close()
                self.generation += 1
                self._pc = self._new_pc()
            await self.handle(kind, message)
            self.pulse.notify()

    async def handle(self, kind: str, message: dict[str, Any]) -> None:
        """Subclasses: react to ``publish`` / ``offer`` / ``reset`` on the current ``pc``."""

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._pc is not None:
                await self._pc.close()


class FailoverPublisher(FailoverParticipant):
    """Publishes generated video; publishes again (fresh connection, fresh track) after a reset."""

    def __init__(self, url: str | Sequence[str], room: str, name: str, *, backoff: Backoff | None = None) -> None:
        super().__init__(url, room, name, subscribe=False, backoff=backoff)
        #: ``time.monotonic()`` of each publish-answer applied.
        self.published_at: list[float] = []
        self.refusals: list[SignalingError] = []
        self.track: PatternVideoTrack | None = None
        self._retry = Backoff(base=0.1, cap=2.0)

    async def start(self) -> None:
        await super().start()
        self._work.put_nowait(("publish", {}))

    async def handle(self, kind: str, message: dict[str, Any]) -> None:
        if kind not in ("publish", "reset"):
            return
        pc = self.pc
        self.track = PatternVideoTrack(first_index=self.generation * GENERATION_STRIDE)
        force_codec(pc.addTransceiver(self.track, "sendonly"), "video", "VP8")
        await pc.setLocalDescription(await pc.createOffer())
        assert_loopback_only(pc.localDescription.sdp, who=self.name)
        cseq = await self.client.send({"type": "publish", "sdp": pc.localDescription.sdp})
        try:
            answer = await self.reply_to(cseq)
        except SignalingError as exc:
            # The SFU went away under this publish: the reset that follows publishes again. A
            # publish that got no answer in time (sfu-unavailable: Redis or the node was slow, no
            # reset follows) is retried on a fresh connection after the SDK's backoff, as an
            # application would.
            self.refusals.append(exc)
            if exc.error.code == "sfu-unavailable" and pc is self._pc:
                await asyncio.sleep(self._retry.next_delay())
                self._work.put_nowait(("reset", {}))
            return
        self._retry.attempt = 0
        assert_loopback_only(answer["sdp"], who="the SFU")
        if pc is self._pc:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            self.published_at.append(time.monotonic())


class FailoverSubscriber(FailoverParticipant):
    """Answers subscriber-offers and decodes; starts a fresh connection after a reset."""

    def __init__(self, url: str | Sequence[str], room: str, name: str, *, backoff: Backoff | None = None) -> None:
        super().__init__(url, room, name, subscribe=True, backoff=backoff)
        #: What each generation of peer connection decoded (video only).
        self.received: dict[int, list[ReceivedTrack]] = {}

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        if isinstance(event, ServerMessage) and event.message.get("type") == "subscriber-offer":
            self._work.put_nowait(("offer", event.message))

    def _new_pc(self) -> RTCPeerConnection:
        pc = super()._new_pc()
        generation = self.generation  # already counts the reset this connection follows

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "video":
                return
            received = ReceivedTrack(kind="video")
            self.received.setdefault(generation, []).append(received)
            self.tasks.spawn(consume_frames(track, received, self.pulse))

        return pc

    async def handle(self, kind: str, message: dict[str, Any]) -> None:
        if kind != "offer":
            return
        pc = self.pc
        assert_loopback_only(message["sdp"], who="the SFU")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        assert_loopback_only(pc.localDescription.sdp, who=self.name)
        await self.client.send({"type": "subscriber-answer", "sdp": pc.localDescription.sdp})

    def frames(self, generation: int | None = None) -> int:
        """Video frames decoded by one generation of connection (default: all of them)."""
        tracks = self.received.get(generation, []) if generation is not None else [
            t for ts in self.received.values() for t in ts
        ]
        return sum(t.frames for t in tracks)

    def first_frame_at(self, generation: int) -> float | None:
        times = [t.first_frame_at for t in self.received.get(generation, []) if t.first_frame_at is not None]
        return min(times, default=None)

    def frame_times(self) -> list[float]:
        return sorted(t for ts in self.received.values() for r in ts for t in r.frame_times)

    async def wait_frames(self, frames: int, *, generation: int | None = None) -> None:
        await self.wait_for(
            lambda: self.frames(generation) >= frames,
            what=f"{frames} decoded frames" + (f" on connection #{generation}" if generation is not None else ""),
        )
