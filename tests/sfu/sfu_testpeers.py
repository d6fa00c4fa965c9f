"""Real aiortc peers that talk to an in-process :class:`Sfu` on 127.0.0.1, for tests and bench.

The publisher sends a generated moving picture whose frame number is drawn into the image as
big black/white blocks, so a subscriber can tell exactly which frames it decoded, whatever the
latency. aiortc encodes on the publisher side and decodes on the subscriber side only; the SFU
in between must do neither.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from sfu.aiortc_hooks import ReceiverTap, TranscodingProbe
from sfu.config import SfuConfig
from sfu.packets import InboundRtp, ReceiveInfo, SenderReport
from sfu.service import Sfu
from sfu.tasks import TaskRegistry

INDEX_BITS = 16
BLOCK = 16


#: Multiply every test timeout by this (slow or loaded machines): SFU_TEST_TIME_SCALE=3.
TIME_SCALE = float(os.environ.get("SFU_TEST_TIME_SCALE", "1"))
LOOPBACK = ("127.0.0.1",)
#: Remote candidates the SFU under test may contact: the test peers live on loopback, which the
#: SFU's candidate policy refuses by default.
LOOPBACK_PEERS = ("127.0.0.0/8",)


class Pulse:
    """Wakes waiters whenever something changed; ``notify`` is synchronous (usable in emit)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds, re-checking after every notification."""
        async with asyncio.timeout(timeout * TIME_SCALE):
            while not predicate():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.add(waiter)
                try:
                    await waiter
                finally:
                    self._waiters.discard(waiter)


def client_configuration() -> RTCConfiguration:
    """No STUN/TURN at all (never a public server), one bundled transport."""
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def render_frame(index: int, width: int, height: int) -> np.ndarray:
    """A yuv420p picture: frame number as blocks on top, a moving bar and gradient below."""
    y = np.empty((height, width), dtype=np.uint8)
    columns = (np.arange(width, dtype=np.int32) * 2 + index * 4) % 200 + 28
    y[:] = columns.astype(np.uint8)
    bar = (index * 6) % max(1, width - 40)
    y[BLOCK * 2 :, bar : bar + 40] = 235
    y[: BLOCK * 2, :] = 128
    for bit in range(INDEX_BITS):
        value = 235 if (index >> bit) & 1 else 16
        y[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)
    return np.concatenate([y, chroma])


def read_index(frame: VideoFrame) -> int:
    """The frame number drawn by :func:`render_frame`, read back from a decoded picture."""
    y = frame.to_ndarray(format="gray")
    index = 0
    for bit in range(INDEX_BITS):
        block = y[4 : BLOCK - 4, bit * BLOCK + 4 : (bit + 1) * BLOCK - 4]
        if float(block.mean()) > 128:
            index |= 1 << bit
    return index


class PatternVideoTrack(VideoStreamTrack):
    """Generated moving video at 30 fps; records when each frame was handed to the encoder."""

    def __init__(self, width: int = 320, height: int = 240, first_index: int = 0) -> None:
        super().__init__()
        self.width = width
        self.height = height
        #: Frame numbers start here, so frames of different publishers can be told apart.
        self.first_index = first_index
        self.sent_at: list[float] = []
        self.pulse = Pulse()

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        index = self.first_index + len(self.sent_at)
        frame = VideoFrame.from_ndarray(
            render_frame(index, self.width, self.height), format="yuv420p"
        )
        frame.pts = pts
        frame.time_base = time_base
        self.sent_at.append(time.monotonic())
        self.pulse.notify()
        return frame

    def sent_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.sent_at if start <= t <= end)


class CountingAudioTrack(AudioStreamTrack):
    """aiortc's silence generator, counting the 20 ms frames handed to the Opus encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.frames_sent = 0

    async def recv(self) -> Any:
        frame = await super().recv()
        self.frames_sent += 1
        return frame


class ToneAudioTrack(CountingAudioTrack):
    """A loud 440 Hz tone (about -9 dBov): what a speaking participant sends."""

    def __init__(self, amplitude: int = 12000) -> None:
        super().__init__()
        self.amplitude = amplitude
        self._phase = 0

    async def recv(self) -> Any:
        frame = await super().recv()
        samples = frame.samples
        t = (np.arange(samples) + self._phase) / frame.sample_rate
        self._phase += samples
        tone = (self.amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2")
        frame.planes[0].update(tone.tobytes())
        return frame


def force_codec(transceiver: Any, kind: str, name: str) -> None:
    """Codec preferences on a client transceiver (constrained baseline for H.264)."""
    chosen: list[Any] = []
    rtx: list[Any] = []
    for capability in RTCRtpSender.getCapabilities(kind).codecs:
        codec_name = capability.mimeType.split("/", 1)[1]
        if codec_name == "rtx":
            rtx.append(capability)
        elif codec_name == name and not chosen:
            if name == "H264" and capability.parameters.get("profile-level-id") != "42e01f":
                continue
            chosen.append(capability)
    transceiver.setCodecPreferences(chosen + rtx)


class TaskSet(TaskRegistry):
    """The tasks a test peer owns: the one registry, whose close re-raises the first failure."""

    def __init__(self) -> None:
        super().__init__("test-peer")

    async def close(self, deadline: float | None = None) -> None:
        """Cancel and await every task; re-raise the first failure one of them had."""
        await super().close(deadline)
        if self.errors:
            raise self.errors[0]


class PublisherClient:
    """A participant that publishes generated video (and audio) to the SFU."""

    def __init__(
        self,
        sfu: Sfu,
        room: str,
        peer: str,
        *,
        video_codec: str | None = "VP8",
        audio: bool = True,
        width: int = 320,
        height: int = 240,
        first_index: int = 0,
        audio_track: CountingAudioTrack | None = None,
    ) -> None:
        self.sfu = sfu
        self.room = room
        self.peer = peer
        self.pc = RTCPeerConnection(client_configuration())
        self.video: PatternVideoTrack | None = None
        self.audio: CountingAudioTrack | None = None
        if video_codec is not None:
            self.video = PatternVideoTrack(width, height, first_index)
            force_codec(self.pc.addTransceiver(self.video, "sendonly"), "video", video_codec)
        if audio:
            self.audio = audio_track or CountingAudioTrack()
            force_codec(self.pc.addTransceiver(self.audio, "sendonly"), "audio", "opus")
        self.messages: list[dict[str, Any]] = []

    def deliver(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def messages_published(self) -> list[dict[str, str]]:
        return [m["track"] for m in self.messages if m["type"] == "track-published"]

    async def publish(
        self,
        munge_offer: Callable[[str], str] = lambda s: s,
        munge_answer: Callable[[str], str] = lambda s: s,
        tracks: list[dict[str, Any]] | None = None,
    ) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = munge_offer(self.pc.localDescription.sdp)
        answer = await self.sfu.publish(self.room, self.peer, offer, tracks=tracks)
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=munge_answer(answer), type="answer")
        )

    def track_ids(self) -> list[str]:
        ids = []
        for track in (self.video, self.audio):
            if track is not None:
                ids.append(track.id)
        return ids

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class ReceivedTrack:
    """What one subscriber got on one m-line."""

    kind: str
    first_frame_at: float | None = None
    frames: int = 0
    indexes: list[int] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)


async def consume_frames(
    track: MediaStreamTrack, received: ReceivedTrack, pulse: Pulse, *, read_indexes: bool = True
) -> None:
    """Decode ``track`` until it ends, counting frames (and reading video frame numbers)."""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        now = time.monotonic()
        if received.first_frame_at is None:
            received.first_frame_at = now
        received.frames += 1
        received.frame_times.append(now)
        if received.kind == "video" and read_indexes:
            assert isinstance(frame, VideoFrame)
            received.indexes.append(read_index(frame))
        pulse.notify()


class SubscriberClient:
    """A participant that subscribes: answers subscriber-offers, decodes what arrives."""

    def __init__(
        self,
        sfu: Sfu,
        room: str,
        peer: str,
        *,
        munge_offer: Callable[[str], str] = lambda s: s,
        munge_answer: Callable[[str], str] = lambda s: s,
        read_indexes: bool = True,
        auto_answer: bool = True,
        tap_video: bool = False,
    ) -> None:
        self.sfu = sfu
        self.room = room
        self.peer = peer
        self.pc = RTCPeerConnection(client_configuration())
        self.messages: list[dict[str, Any]] = []
        self.received: dict[str, ReceivedTrack] = {}
        self.connected = asyncio.Event()
        self.connected_at: float | None = None
        self.offers_answered = 0
        self.pulse = Pulse()
        self._munge_offer = munge_offer
        self._munge_answer = munge_answer
        self._read_indexes = read_indexes
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._release: asyncio.Queue[None] = asyncio.Queue()
        self._auto_answer = auto_answer
        self._tap_video = tap_video
        #: With ``tap_video``: the raw forwarded video packets (no decoding on this client).
        self.tapped: list[InboundRtp] = []
        self.video_tap: ReceiverTap | None = None
        self._tasks = TaskSet()
        self._tasks.spawn(self._run())

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected" and not self.connected.is_set():
                self.connected_at = time.monotonic()
                self.connected.set()
            self.pulse.notify()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            mid = str(next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track))
            received = ReceivedTrack(kind=track.kind)
            self.received[mid] = received
            if self._tap_video and track.kind == "video":
                receiver = next(t.receiver for t in self.pc.getTransceivers() if t.mid == mid)
                self.video_tap = ReceiverTap(receiver, _Recorder(self), TranscodingProbe())
            else:
                self._tasks.spawn(self._consume(track, received))

    def deliver(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "subscriber-offer":
            self._inbox.put_nowait(message)
        self.pulse.notify()

    def published(self) -> list[dict[str, str]]:
        """Tracks announced and not withdrawn, in order."""
        live: dict[str, dict[str, str]] = {}
        for message in self.messages:
            if message["type"] == "track-published":
                live[message["track"]["id"]] = message["track"]
            elif message["type"] == "track-unpublished":
                live.pop(message["track"]["id"], None)
        return list(live.values())

    def video(self) -> ReceivedTrack:
        return next(r for r in self.received.values() if r.kind == "video")

    def audio(self) -> ReceivedTrack:
        return next(r for r in self.received.values() if r.kind == "audio")

    async def _run(self) -> None:
        while True:
            message = await self._inbox.get()
            if not self._auto_answer:
                await self._release.get()
            offer = self._munge_offer(message["sdp"])
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = self._munge_answer(self.pc.localDescription.sdp)
            await self.sfu.subscriber_answer(self.room, self.peer, answer)
            self.offers_answered += 1
            self.pulse.notify()

    async def _consume(self, track: MediaStreamTrack, received: ReceivedTrack) -> None:
        await consume_frames(track, received, self.pulse, read_indexes=self._read_indexes)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        await self.pulse.wait_for(predicate, timeout)

    def answer_next(self) -> None:
        """With ``auto_answer=False``: let the next queued offer be answered."""
        self._release.put_nowait(None)

    async def send_pli(self) -> None:
        """With ``tap_video``: send a PLI for the forwarded video stream, as a browser would."""
        assert self.video_tap is not None and self.tapped
        await self.video_tap.send_pli(self.tapped[-1].ssrc)

    def offers(self) -> list[str]:
        return [m["sdp"] for m in self.messages if m["type"] == "subscriber-offer"]

    async def close(self) -> None:
        await self._tasks.close()
        await self.pc.close()


class _Recorder:
    """Receiver events of a tapped client video receiver: keep the packets."""

    def __init__(self, client: SubscriberClient) -> None:
        self._client = client

    async def on_rtp(self, packet: InboundRtp) -> None:
        self._client.tapped.append(packet)
        self._client.pulse.notify()

    def on_receiver_started(self, info: ReceiveInfo) -> None:
        pass

    def on_upstream_estimate(self, bitrate: int) -> int:
        return bitrate

    def on_sender_report(self, report: SenderReport) -> None:
        pass


class Router:
    """The ``emit`` callback: delivers the SFU's messages to the test peers, in order."""

    def __init__(self) -> None:
        self.peers: dict[str, PublisherClient | SubscriberClient] = {}
        self.log: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, participant: str, message: dict[str, Any]) -> None:
        self.log.append((participant, message))
        peer = self.peers.get(participant)
        if peer is not None:
            peer.deliver(message)


class SfuEnv:
    """An SFU on loopback plus the test peers around it; ``close`` tears everything down."""

    def __init__(self, config: SfuConfig | None = None) -> None:
        self.router = Router()
        self.config = config or SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=LOOPBACK_PEERS)
        self.sfu = Sfu(self.config, self.router)
        self._peers: list[PublisherClient | SubscriberClient] = []

    def publisher(self, peer: str, room: str = "room", **kwargs: Any) -> PublisherClient:
        client = PublisherClient(self.sfu, room, peer, **kwargs)
        self.router.peers[peer] = client
        self._peers.append(client)
        return client

    async def subscriber(
        self, peer: str, room: str = "room", *, join: bool = True, **kwargs: Any
    ) -> SubscriberClient:
        client = SubscriberClient(self.sfu, room, peer, **kwargs)
        self.router.peers[peer] = client
        self._peers.append(client)
        if join:
            await self.sfu.join(room, peer)
        return client

    async def drop(self, client: PublisherClient | SubscriberClient) -> None:
        """Leave the SFU and close the client."""
        await self.sfu.leave(client.room, client.peer)
        await client.close()
        self._peers.remove(client)
        self.router.peers.pop(client.peer, None)

    async def close(self) -> None:
        for client in self._peers:
            await client.close()
        self._peers.clear()
        await self.sfu.close()
