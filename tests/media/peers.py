"""Participants that do what a real client does: the Python SDK for signaling, aiortc for media.

A :class:`Publisher` offers its publisher connection with ``publish`` and applies the
``publish-answer``; a :class:`Subscriber` answers every ``subscriber-offer`` with
``subscriber-answer`` and decodes what arrives. Nothing here talks to the SFU directly: every
byte of signaling goes through the server's WebSocket.

The publisher sends the generated picture of ``tests/sfu`` whose frame number is drawn into the
image, so a subscriber knows exactly which frames it decoded, whatever the latency.

Network rules, enforced here rather than trusted: every peer connection gets an explicit
``RTCConfiguration`` built from ``welcome.ice_servers`` (aiortc falls back to a public STUN
server on ``None``), every ICE server URL must point at 127.0.0.1, and every SDP a peer
produces must carry loopback candidates only (conftest.py restricts aioice's host gathering to
127.0.0.1 for the whole process).

Timing: every wait is on a condition, bounded by :data:`MEDIA_PATIENCE`, which scales with
``SWITCHBOARD_TEST_TIME_SCALE`` (the waits on :class:`Pulse` from tests/sfu also scale with
``SFU_TEST_TIME_SCALE``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from sfu import aiortc_hooks
from signaling.client import Client, ErrorReceived, Event, Joined, ServerMessage
from signaling.core.backoff import Backoff
from signaling.turn.uris import parse_ice_uri
from tests.conftest import UNIT
from tests.sfu.sfu_measure import Window
from tests.sfu.sfu_testpeers import (
    CountingAudioTrack,
    PatternVideoTrack,
    Pulse,
    ReceivedTrack,
    TaskSet,
    consume_frames,
    force_codec,
)

LOOPBACK = "127.0.0.1"
#: Bound of every "this must happen eventually" wait on media (ICE, DTLS, first keyframe,
#: renegotiation) on a loaded 2-core machine. Scaled by SWITCHBOARD_TEST_TIME_SCALE.
MEDIA_PATIENCE = 400 * UNIT

_CANDIDATE = re.compile(r"^a=(candidate:\S+ \d+ (\S+) \d+ (\S+) (\d+) typ (\S+).*)$", re.MULTILINE)
_MID = re.compile(r"^a=mid:(\S+)$", re.MULTILINE)
_MSID = re.compile(r"^a=msid:\S+ (\S+)$")


@dataclass(frozen=True)
class SdpCandidate:
    line: str  # without "a=", as in RTCIceCandidateInit.candidate
    protocol: str
    address: str
    port: int
    type: str


def sdp_candidates(sdp: str) -> list[SdpCandidate]:
    return [
        SdpCandidate(m[1], m[2].lower(), m[3], int(m[4]), m[5])
        for m in _CANDIDATE.finditer(sdp.replace("\r\n", "\n"))
    ]


def assert_loopback_only(sdp: str, *, who: str) -> list[SdpCandidate]:
    """Every candidate in ``sdp`` is on 127.0.0.1 (and there is at least one)."""
    found = sdp_candidates(sdp)
    assert found, f"{who}: no candidate in its SDP"
    strays = [c.line for c in found if c.address != LOOPBACK]
    assert not strays, f"{who} gathered outside loopback: {strays}"
    return found


def first_candidate_init(sdp: str) -> dict[str, Any]:
    """The first candidate of ``sdp`` as a browser would trickle it (``RTCIceCandidateInit``)."""
    mid = _MID.search(sdp.replace("\r\n", "\n"))
    assert mid is not None, "SDP without a=mid"
    return {"candidate": sdp_candidates(sdp)[0].line, "sdpMid": mid[1], "sdpMLineIndex": 0}


def mids_to_tracks(sdp: str) -> dict[str, str | None]:
    """``mid -> track id`` of each m-section of a subscriber-offer (None when not sending)."""
    result: dict[str, str | None] = {}
    for section in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        lines = section.split("\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        if mid is None:
            continue
        sending = "a=sendonly" in lines or "a=sendrecv" in lines
        msid = next((m[1] for line in lines if (m := _MSID.match(line))), None)
        result[mid] = msid if sending else None
    return result


def rtc_configuration(ice_servers: list[dict[str, Any]], *, relay: bool = False) -> RTCConfiguration:
    """What a client builds from ``welcome.ice_servers``; refuses any server off loopback."""
    servers = []
    for entry in ice_servers:
        urls = entry["urls"] if isinstance(entry["urls"], list) else [entry["urls"]]
        for url in urls:
            assert parse_ice_uri(url).host == LOOPBACK, f"ICE server off loopback: {url}"
        servers.append(
            RTCIceServer(urls=urls, username=entry.get("username"), credential=entry.get("credential"))
        )
    return RTCConfiguration(
        iceServers=servers,  # explicit, even when empty: never aiortc's public default
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay else RTCIceTransportPolicy.ALL,
    )


@dataclass(frozen=True)
class SelectedPair:
    local_type: str
    local_address: tuple[str, int]
    remote_type: str
    remote_address: tuple[str, int]


def selected_pairs(pc: RTCPeerConnection) -> list[SelectedPair]:
    """The nominated ICE candidate pair of each transport of ``pc``.

    aiortc 1.16 exposes no selected pair (``getStats`` has no candidate-pair entries). This is
    the one private read of these tests: the ICE transport's aioice ``Connection`` and its
    ``_nominated`` pairs. aiortc and aioice are pinned exactly (``sfu.aiortc_hooks`` refuses
    other versions); the shape is checked so a change fails here by name.
    """
    pairs = []
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        connection = getattr(ice, "_connection", None)
        nominated = getattr(connection, "_nominated", None)
        assert isinstance(nominated, dict), "aioice internals moved: RTCIceTransport._connection._nominated"
        for pair in nominated.values():
            local, remote = pair.local_candidate, pair.remote_candidate
            selected = SelectedPair(local.type, (local.host, local.port), remote.type, (remote.host, remote.port))
            if selected not in pairs:
                pairs.append(selected)
    return pairs


class HeldBackoff(Backoff):
    """Reconnect only after ``hold`` seconds, every time: keeps a cut session detached a while."""

    def __init__(self, hold: float) -> None:
        super().__init__()
        self.hold = hold

    def next_delay(self) -> float:
        self.attempt += 1
        return self.hold


class SignalingError(AssertionError):
    """The server answered a request with ``error``."""

    def __init__(self, error: ErrorReceived) -> None:
        super().__init__(f"{error.code}: {error.message} (cseq {error.cseq})")
        self.error = error


class Participant:
    """One SDK client, every event it received, and the tasks it owns."""

    def __init__(
        self, url: str | Sequence[str], room: str, name: str, *, backoff: Backoff | None = None, subscribe: bool = True
    ) -> None:
        self.name = name
        self.client = Client(url, room, name=name, subscribe=subscribe, backoff=backoff)
        self.events: list[Event] = []
        #: ``time.monotonic()`` at which each of ``events`` arrived.
        self.event_times: list[float] = []
        self.welcome: dict[str, Any] = {}
        self.pulse = Pulse()
        self.tasks = TaskSet()

    async def start(self) -> None:
        await self.client.connect()
        first = await self.client.next_event()
        assert isinstance(first, Joined), first
        self.welcome = first.welcome
        self.tasks.spawn(self._pump())

    @property
    def peer_id(self) -> str:
        assert self.client.peer_id is not None
        return self.client.peer_id

    @property
    def session_id(self) -> str:
        assert self.client.session_id is not None
        return self.client.session_id

    async def _pump(self) -> None:
        async for event in self.client:
            self.events.append(event)
            self.event_times.append(time.monotonic())
            self.on_event(event)
            self.pulse.notify()

    def on_event(self, event: Event) -> None:
        """Subclasses react to events here (synchronously, in arrival order)."""

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [e.message for e in self.events if isinstance(e, ServerMessage) and e.message["type"] == kind]

    def errors(self) -> list[ErrorReceived]:
        return [e for e in self.events if isinstance(e, ErrorReceived)]

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = MEDIA_PATIENCE, what: str = ""
    ) -> None:
        """Wait until ``predicate()`` holds; a failed task of this participant fails at once."""

        def done() -> bool:
            if self.tasks.errors:
                raise self.tasks.errors[0]
            return predicate()

        try:
            await self.pulse.wait_for(done, timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name}: timed out waiting for {what or predicate}") from None

    async def wait_event(self, event: Event) -> None:
        """Until the SDK delivered an event equal to ``event`` (e.g. ``PeerLeft(peer, "left")``)."""
        await self.wait_for(lambda: event in self.events, what=repr(event))

    async def wait_event_of(self, kind: type) -> Any:
        """Until the SDK delivered an event of type ``kind``; returns the first one."""
        await self.wait_for(lambda: bool(self.of_type(kind)), what=kind.__name__)
        return self.of_type(kind)[0]

    async def reply_to(self, cseq: int) -> dict[str, Any]:
        """The ``publish-answer`` naming ``cseq``; raises :class:`SignalingError` on ``error``."""

        def reply() -> ServerMessage | ErrorReceived | None:
            for event in self.events:
                if isinstance(event, ErrorReceived) and event.cseq == cseq:
                    return event
                if isinstance(event, ServerMessage) and event.message.get("cseq") == cseq:
                    return event
            return None

        await self.wait_for(lambda: reply() is not None, what=f"the reply to cseq {cseq}")
        answer = reply()
        if isinstance(answer, ErrorReceived):
            raise SignalingError(answer)
        assert answer is not None
        return answer.message

    async def barrier(self) -> None:
        """Return once the server has processed every message this client sent before.

        The hub handles one connection's messages in order, and answers a ``signal`` to oneself
        with ``error self-target`` naming its cseq: once that error is here, any error about an
        earlier message would be here too (server messages are delivered in ``seq`` order).
        """
        cseq = await self.client.signal(self.peer_id, {"barrier": True})
        try:
            await self.reply_to(cseq)
        except SignalingError as exc:
            assert exc.error.code == "self-target", exc
        else:
            raise AssertionError("a signal to oneself was not refused")

    async def close(self) -> None:
        """Stop our tasks, leave, then (subclasses) close our peer connections.

        Leaving first is what a well-behaved client does: the server ends the session and the
        SFU closes its side of our connections before we close ours, which keeps teardown clear
        of the SFU's reaction to a connection closed under it (``Sfu._on_pc_down``).
        """
        try:
            await self.tasks.close()  # re-raises the first failure of a task of ours
        finally:
            await self.client.leave()  # closes the client too


class Publisher(Participant):
    """Publishes generated video (and Opus silence) on its publisher peer connection."""

    def __init__(
        self,
        url: str,
        room: str,
        name: str,
        *,
        audio: bool = False,
        relay: bool = False,
        backoff: Backoff | None = None,
        subscribe: bool = True,
    ) -> None:
        super().__init__(url, room, name, backoff=backoff, subscribe=subscribe)
        self.relay = relay
        self.video = PatternVideoTrack()
        self.audio = CountingAudioTrack() if audio else None
        self._pc: RTCPeerConnection | None = None

    @property
    def pc(self) -> RTCPeerConnection:
        assert self._pc is not None, "start() first"
        return self._pc

    async def start(self) -> None:
        await super().start()
        self._pc = RTCPeerConnection(rtc_configuration(self.welcome["ice_servers"], relay=self.relay))
        force_codec(self.pc.addTransceiver(self.video, "sendonly"), "video", "VP8")
        if self.audio is not None:
            force_codec(self.pc.addTransceiver(self.audio, "sendonly"), "audio", "opus")
        # Consent checks as a browser does them, not aioice's 0.5 s rule (sfu.aiortc_hooks).
        aiortc_hooks.patient_consent(self.pc)

    def track_ids(self) -> set[str]:
        return {t.id for t in (self.video, self.audio) if t is not None}

    async def publish(self) -> dict[str, Any]:
        """Offer, ``publish``, apply the ``publish-answer``; returns that message."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        assert_loopback_only(offer, who=self.name)
        cseq = await self.client.send({"type": "publish", "sdp": offer})
        answer = await self.reply_to(cseq)
        assert answer["type"] == "publish-answer", answer
        assert_loopback_only(answer["sdp"], who="the SFU")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        return answer

    async def wait_connected(self) -> None:
        state = asyncio.Event()

        @self.pc.on("connectionstatechange")
        def changed() -> None:
            if self.pc.connectionState in ("connected", "failed", "closed"):
                state.set()

        if self.pc.connectionState != "connected":
            async with asyncio.timeout(MEDIA_PATIENCE):
                await state.wait()
        assert self.pc.connectionState == "connected", self.pc.connectionState

    def sent(self) -> int:
        """Frames handed to the encoder so far; the next frame carries this number."""
        return len(self.video.sent_at)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._pc is not None:
                await self._pc.close()


class Subscriber(Participant):
    """Answers every ``subscriber-offer`` and decodes what the SFU forwards."""

    def __init__(
        self, url: str, room: str, name: str, *, backoff: Backoff | None = None, relay: bool = False
    ) -> None:
        super().__init__(url, room, name, backoff=backoff)
        #: Receive through the TURN relay only (``iceTransportPolicy: "relay"``).
        self.relay = relay
        self.received: dict[str, ReceivedTrack] = {}
        #: ``mid -> track id`` of the latest offer (what a client maps tracks by; see docs/sfu.md).
        self.track_of_mid: dict[str, str | None] = {}
        self.answers: list[int] = []
        #: Times the SFU reset our subscriber connection (``media-failed``, target subscriber).
        self.resets = 0
        #: Of those, connections that closed under us without a ``media-failed``.
        self.lost = 0
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pc: RTCPeerConnection | None = None

    @property
    def pc(self) -> RTCPeerConnection:
        assert self._pc is not None, "start() first"
        return self._pc

    async def start(self) -> None:
        await super().start()
        self._new_pc()
        self.tasks.spawn(self._answer_offers())

    def _new_pc(self) -> None:
        self._pc = RTCPeerConnection(rtc_configuration(self.welcome["ice_servers"], relay=self.relay))
        self.pc.on("track", self._on_track)

    def on_event(self, event: Event) -> None:
        if isinstance(event, ServerMessage) and event.message["type"] == "subscriber-offer":
            self._offers.put_nowait(event.message)
        elif isinstance(event, ErrorReceived) and event.code == "media-failed" and event.target == "subscriber":
            # The SFU closed our subscriber connection; its next offer is for a fresh one
            # (docs/protocol.md, media failures). Queued, so it happens between two offers.
            self._offers.put_nowait({"type": "reset"})

    def live_tracks(self) -> dict[str, dict[str, str]]:
        """Tracks announced with ``track-published`` and not withdrawn since."""
        live: dict[str, dict[str, str]] = {}
        for event in self.events:
            if isinstance(event, ServerMessage):
                message = event.message
                if message["type"] == "track-published":
                    live[message["track"]["id"]] = message["track"]
                elif message["type"] == "track-unpublished":
                    live.pop(message["track"]["id"], None)
        return live

    def no_live_tracks(self) -> bool:
        return not self.live_tracks()

    async def _answer_offers(self) -> None:
        while True:
            offer = await self._offers.get()
            if offer["type"] == "reset":
                self.resets += 1
                await self.pc.close()
                self._new_pc()
                continue
            if self.pc.signalingState == "closed":
                # aiortc closed the connection by itself (every DTLS transport closed, e.g. the
                # SFU closed its side): a fresh offer is for a fresh connection.
                self.lost += 1
                self.resets += 1
                self._new_pc()
            assert_loopback_only(offer["sdp"], who="the SFU")
            self.track_of_mid = mids_to_tracks(offer["sdp"])
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            aiortc_hooks.patient_consent(self.pc)  # before the answer starts ICE
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = self.pc.localDescription.sdp
            assert_loopback_only(answer, who=self.name)
            cseq = await self.client.send({"type": "subscriber-answer", "sdp": answer})
            self.answers.append(cseq)
            self.pulse.notify()

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
        received = ReceivedTrack(kind=track.kind)
        # A fresh connection after a reset reuses the mids: keep what the old one received.
        self.received[str(mid) if not self.resets else f"{mid}#{self.resets}"] = received
        self.tasks.spawn(self._consume(track, received))

    async def _consume(self, track: MediaStreamTrack, received: ReceivedTrack) -> None:
        await consume_frames(track, received, self.pulse)

    async def wait_answered(self, offers: int) -> None:
        """Until this subscriber has answered ``offers`` subscriber-offers in all."""
        await self.wait_for(lambda: len(self.answers) >= offers, what=f"{offers} offer(s) answered")

    async def wait_decoding(self, frames: int = 5) -> None:
        """Until some video m-line has decoded ``frames`` frames."""
        await self.wait_for(lambda: self.decoded_at_least(frames), what=f"{frames} decoded frames")

    async def wait_decoded_past(self, index: int) -> None:
        """Until a frame numbered above ``index`` has been decoded."""
        await self.wait_for(lambda: max(self.decoded(), default=-1) > index, what=f"a frame past #{index}")

    def video(self) -> ReceivedTrack:
        return next(r for r in self.received.values() if r.kind == "video")

    def audio(self) -> ReceivedTrack:
        return next(r for r in self.received.values() if r.kind == "audio")

    def decoded(self) -> set[int]:
        """Frame numbers decoded so far, on every video m-line."""
        return {i for r in self.received.values() if r.kind == "video" for i in r.indexes}

    def decoded_at_least(self, frames: int) -> bool:
        return any(r.kind == "video" and r.frames >= frames for r in self.received.values())

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._pc is not None:
                await self._pc.close()


class WindowMeter:
    """Marks a window of frames on the publisher; :meth:`finish` waits for the subscribers."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.first = publisher.sent()
        self.started = time.monotonic()

    async def wait_sent(self, frames: int) -> None:
        """Until the publisher has handed ``frames`` frames of this window to its encoder."""
        video = self.publisher.video
        target = self.first + frames
        try:
            await video.pulse.wait_for(lambda: len(video.sent_at) >= target, MEDIA_PATIENCE)
        except TimeoutError:
            raise AssertionError(f"publisher sent {len(video.sent_at) - self.first}/{frames} frames") from None

    async def finish(self, subscribers: list[Subscriber]) -> Window:
        """Close the window now; return once every subscriber decoded frames past its end.

        Frames after the window decoded: everything inside it had its chance (NACKs included).
        """
        window = Window(self.first, self.publisher.sent() - 1, self.started, time.monotonic())
        for subscriber in subscribers:
            await subscriber.wait_decoded_past(window.last + 5)
        return window


async def measure(publisher: Publisher, subscribers: list[Subscriber], frames: int) -> Window:
    meter = WindowMeter(publisher)
    await meter.wait_sent(frames)
    return await meter.finish(subscribers)
