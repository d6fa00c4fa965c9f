"""Tracks between the application and the room's peer connections.

- :class:`IncomingTrack`: what ``Room.subscribe`` returns, an aiortc ``MediaStreamTrack`` of
  decoded ``av.AudioFrame``/``av.VideoFrame``. It outlives the peer connections (an SFU failover
  re-routes it) and its queue is bounded: a reader that falls behind loses the oldest frames,
  never the room's memory.
- :class:`RtpStream`: the encoded RTP packets of a track, for programs that must not decode.
- :class:`SenderTrack`: the proxy a peer connection sends from. aiortc stops a sender's track
  when its connection closes; the proxy stops, the application's track lives on and is sent
  again after a media reconnect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from switchboard.events import RemoteTrack


class _Bounded:
    """A bounded queue that drops the oldest item when full; ``None`` ends it."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.ended = False

    def put(self, item: Any) -> None:
        if self.ended:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    def end(self) -> None:
        if not self.ended:
            self.put(None)
            self.ended = True


class IncomingTrack(MediaStreamTrack):
    """Decoded media of one remote track. ``recv()`` raises ``MediaStreamError`` once the track
    is unpublished or the room closed."""

    def __init__(self, track: RemoteTrack, *, max_frames: int) -> None:
        super().__init__()
        self.kind = track.kind
        self._id = track.id
        #: The remote track this carries (its state at subscription time).
        self.info = track
        self._frames = _Bounded(max_frames)

    @property
    def dropped(self) -> int:
        """Frames dropped because the reader fell more than ``max_frames`` behind."""
        return self._frames.dropped

    def deliver(self, frame: Any) -> None:
        self._frames.put(frame)

    def end(self) -> None:
        self._frames.end()

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._frames.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One encoded RTP packet as the room's subscriber connection received it (after SRTP)."""

    track_id: str
    ssrc: int
    payload_type: int
    sequence_number: int
    timestamp: int
    marker: bool
    payload: bytes
    #: ``"audio/opus"``, ``"video/VP8"``...; empty if the payload type is not in the offer.
    mime_type: str
    clock_rate: int
    #: RFC 6464 level of audio packets (-dBov, 0..127), when present.
    audio_level: int | None


class RtpStream:
    """Async iterator of :class:`RtpPacket` (bounded; oldest dropped). Ends with the track."""

    def __init__(self, track: RemoteTrack, *, max_packets: int) -> None:
        self.info = track
        self._packets = _Bounded(max_packets)

    @property
    def dropped(self) -> int:
        return self._packets.dropped

    def deliver(self, packet: RtpPacket) -> None:
        self._packets.put(packet)

    def end(self) -> None:
        self._packets.end()

    def __aiter__(self) -> RtpStream:
        return self

    async def __anext__(self) -> RtpPacket:
        packet = await self._packets.queue.get()
        if packet is None:
            self._packets.queue.put_nowait(None)  # later reads end too
            raise StopAsyncIteration
        assert isinstance(packet, RtpPacket)
        return packet


class SenderTrack(MediaStreamTrack):
    """What one peer connection sends: reads the application's track, never stops it."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._id = source.id  # the msid track id: the published track keeps its id
        self._source = source

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        return await self._source.recv()


@dataclass(slots=True)
class LocalTrackPublication:
    """A track this room publishes. ``id`` is the track id the others see."""

    track: MediaStreamTrack
    source: str
    muted: bool = False

    @property
    def id(self) -> str:
        return str(self.track.id)

    @property
    def kind(self) -> str:
        return str(self.track.kind)

    def describe(self) -> dict[str, Any]:
        """The entry of ``publish.tracks``."""
        return {"id": self.id, "source": self.source, "muted": self.muted}

