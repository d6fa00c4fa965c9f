"""A participant of a Switchboard room with media: signaling through ``signaling.client``,
media on two aiortc peer connections with the SFU (docs/protocol.md).

- The **publisher** connection: we offer (``publish``), the SFU answers (``publish-answer``).
- The **subscriber** connection: the SFU offers (``subscriber-offer``) whenever the set of
  tracks we receive changes; we answer (``subscriber-answer``).

One task (the *media worker*) applies every change to the peer connections, in arrival order:
offers, our publishes, resets. So an offer that arrives after a reset is never applied to the
connection the reset dropped, and a publish never races a renegotiation.

Reconnects follow the contract of docs/protocol.md: a signaling cut is resumed by the client
and the peer connections are not touched; ``reconnect {scope: media}`` (SFU failover), a
rejoin (the signaling session was gone) or ``media-failed`` on the publisher rebuild the
connections and publish every local track again, with one :class:`MediaReconnected` event; a
fatal close (4001, 4003, 4006 kicked, 4010, 4012) ends the room with :class:`Disconnected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from sfu.aiortc_hooks import ReceiverTap, TranscodingProbe
from sfu.packets import InboundRtp, ReceiveInfo, SenderReport
from signaling import client as sig
from signaling.core.backoff import Backoff
from signaling.core.codes import ClientAction, Close
from switchboard.errors import ConnectError, Disconnected, RequestError, RoomError
from switchboard.events import (
    DataReceived,
    MediaReconnected,
    RemoteParticipant,
    RemoteTrack,
    RoomClosed,
    RoomEvent,
    SignalingReconnecting,
    SignalingResumed,
    TrackPublished,
    TrackSubscribed,
    TrackUnpublished,
)
from switchboard.ice import IceOptions, before_gathering, rtc_configuration
from switchboard.state import RoomState, offer_codecs, offer_tracks
from switchboard.tracks import (
    IncomingTrack,
    LocalTrackPublication,
    RtpPacket,
    RtpStream,
    SenderTrack,
)

log = logging.getLogger(__name__)

E = TypeVar("E")
#: ``auto_subscribe``: every track, none, or the tracks a predicate accepts.
SubscribePolicy = bool | Callable[[RemoteTrack], bool]
#: The video and audio codecs the room publishes in (what every browser decodes).
PUBLISH_CODECS = {"video": "VP8", "audio": "opus"}
SOURCES = ("camera", "microphone", "screen", "screen-audio")


@dataclass(slots=True)
class RoomOptions:
    """Tunables; the defaults suit bots on a LAN or loopback."""

    #: Bound of each request's wait for its answer (``publish-answer``), seconds.
    request_timeout: float = 15.0
    #: Bound of each wait while closing (leave, peer connections), seconds.
    close_timeout: float = 5.0
    #: Decoded frames an :class:`IncomingTrack` holds for a slow reader (oldest dropped).
    max_frames: int = 100
    #: Packets an :class:`RtpStream` holds (oldest dropped).
    max_packets: int = 1000
    #: Events ``async for event in room`` holds per reader (oldest dropped).
    max_events: int = 1024
    backoff: Backoff | None = None


@dataclass(slots=True)
class _Route:
    """One m-line of the subscriber connection and the track it carries now."""

    receiver: RTCRtpReceiver
    kind: str
    track_id: str | None = None
    codecs: dict[int, tuple[str, int]] = field(default_factory=dict)
    tap: ReceiverTap | None = None


@dataclass(slots=True)
class _Work:
    kind: str  # "offer" | "publish" | "unpublish" | "reset" | "subscriber-reset"
    message: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    delay: float = 0.0
    done: asyncio.Future[None] | None = None
    #: Offers: the media generation they belong to (a reset queued after them makes them stale).
    generation: int = 0


class _RawTapEvents:
    """Events of an :class:`sfu.aiortc_hooks.ReceiverTap` on a non-decoding subscriber m-line."""

    def __init__(self, room: Room, route: _Route) -> None:
        self._room = room
        self._route = route

    async def on_rtp(self, packet: InboundRtp) -> None:
        self._room._deliver_rtp(self._route, packet)

    def on_receiver_started(self, info: ReceiveInfo) -> None:
        pass

    def on_upstream_estimate(self, bitrate: int) -> int:
        return bitrate

    def on_sender_report(self, report: SenderReport) -> None:
        pass


class Room:
    """One participant in one room, with media. Create with :meth:`connect`."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        room: str,
        name: str = "",
        token: str | None = None,
        token_provider: sig.TokenProvider | None = None,
        ice: IceOptions | None = None,
        auto_subscribe: SubscribePolicy = True,
        decode: bool = True,
        options: RoomOptions | None = None,
    ) -> None:
        self.options = options or RoomOptions()
        self.name = name
        self.ice = ice or IceOptions()
        #: Which tracks get an :class:`IncomingTrack` without a ``subscribe`` call.
        self.auto_subscribe = auto_subscribe
        #: False: no received track is decoded; only :meth:`rtp` streams carry media.
        self.decode = decode
        self.client = sig.Client(
            url, room, name=name, token=token, token_provider=token_provider,
            subscribe=True, backoff=self.options.backoff,
        )
        self.state = RoomState()
        self._welcome: dict[str, Any] = {}
        self._publications: dict[str, LocalTrackPublication] = {}
        self._subscriptions: dict[str, IncomingTrack] = {}
        self._rtp_streams: dict[str, list[RtpStream]] = {}
        self._routes: dict[str, _Route] = {}  # mid -> route, of the current subscriber connection
        self._publisher: RTCPeerConnection | None = None
        self._subscriber: RTCPeerConnection | None = None
        self._work: asyncio.Queue[_Work] = asyncio.Queue(maxsize=256)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._early_replies: dict[int, dict[str, Any] | sig.ErrorReceived] = {}
        self._readers: list[asyncio.Queue[RoomEvent | None]] = []
        #: Events since the join, for the first reader (None once it exists).
        self._backlog: list[RoomEvent] | None = []
        self._callbacks: dict[type, list[Callable[[Any], Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._probe = TranscodingProbe()
        self._closing = False
        self._finishing = False
        self._closed = asyncio.Event()
        self._close_error: Disconnected | None = None
        self._generation = 0
        #: How many times the media connections were rebuilt (failover, rejoin, media-failed).
        self.media_reconnects = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str | Sequence[str],
        *,
        room: str,
        name: str = "",
        token: str | None = None,
        token_provider: sig.TokenProvider | None = None,
        ice: IceOptions | None = None,
        auto_subscribe: SubscribePolicy = True,
        decode: bool = True,
        options: RoomOptions | None = None,
    ) -> Room:
        """Join ``room`` at ``url`` (``ws://host:port/ws``); returns once joined.

        Raises :class:`ConnectError` (with the close code: 4001 unauthorized, 4003 forbidden...)
        when the join is refused or the server cannot be reached.
        """
        self = cls(
            url, room=room, name=name, token=token, token_provider=token_provider, ice=ice,
            auto_subscribe=auto_subscribe, decode=decode, options=options,
        )
        try:
            await self.client.connect()
        except sig.ClientError as exc:
            raise ConnectError(str(exc), exc.code) from exc
        first = await self.client.next_event()
        if not isinstance(first, sig.Joined):
            await self.client.close()
            raise ConnectError(f"unexpected first event {first!r}")
        self._welcome = first.welcome
        for event in self.state.reset(first.peers):
            self._emit(event)
        self._spawn(self._pump(), "pump")
        self._spawn(self._media_worker(), "media")
        return self

    async def __aenter__(self) -> Room:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def local_peer(self) -> str:
        """Our peer id (changes if the signaling session had to be rejoined)."""
        peer = self.client.peer_id
        assert peer is not None
        return peer

    @property
    def participants(self) -> dict[str, RemoteParticipant]:
        return dict(self.state.participants)

    @property
    def tracks(self) -> dict[str, RemoteTrack]:
        return dict(self.state.tracks)

    @property
    def publications(self) -> list[LocalTrackPublication]:
        return list(self._publications.values())

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def close(self) -> None:
        """Leave the room (the others see ``peer-left``) and close the media; idempotent."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        with contextlib.suppress(sig.ClientError, TimeoutError):
            async with asyncio.timeout(self.options.close_timeout):
                await self.client.leave()
        await self.client.close()
        await self._finish(Close.NORMAL.code, "closed by the application", error=None)

    async def wait_closed(self) -> None:
        """Until the room ends; raises :class:`Disconnected` unless :meth:`close` ended it."""
        await self._closed.wait()
        if self._close_error is not None:
            raise self._close_error

    async def _finish(self, code: int | None, reason: str, error: Disconnected | None) -> None:
        if self._finishing:
            await self._closed.wait()
            return
        self._finishing = True
        self._close_error = error
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.options.close_timeout)
        await self._close_connections()
        for track in self._subscriptions.values():
            track.end()
        for streams in self._rtp_streams.values():
            for stream in streams:
                stream.end()
        for future in self._replies.values():
            if not future.done():
                future.set_exception(error or Disconnected("room closed", code))
        self._closed.set()
        self._emit(RoomClosed(code, reason))
        for reader in self._readers:
            _put_dropping(reader, None)

    # -- events ---------------------------------------------------------------------------------

    def on(self, kind: type[E], callback: Callable[[E], Any]) -> None:
        """Call ``callback(event)`` for every event of class ``kind`` (a coroutine function's
        coroutine is run as a task the room owns)."""
        self._callbacks.setdefault(kind, []).append(callback)

    def __aiter__(self) -> AsyncIterator[RoomEvent]:
        return self.events()

    def events(self) -> AsyncIterator[RoomEvent]:
        """Every event; ends after :class:`RoomClosed`, raising :class:`Disconnected` if the
        room ended for a reason other than :meth:`close`.

        The first iterator starts at the join (the participants and tracks already in the room
        included); any later one starts at its creation: create it before the action whose
        events it should see.
        """
        reader: asyncio.Queue[RoomEvent | None] = asyncio.Queue(maxsize=self.options.max_events)
        self._readers.append(reader)
        backlog, self._backlog = self._backlog, None
        for event in backlog or ():
            _put_dropping(reader, event)
        if self._closed.is_set():
            _put_dropping(reader, None)
        return self._read_events(reader)

    async def _read_events(self, reader: asyncio.Queue[RoomEvent | None]) -> AsyncIterator[RoomEvent]:
        try:
            while True:
                event = await reader.get()
                if event is None:
                    break
                yield event
        finally:
            self._readers.remove(reader)
        if self._close_error is not None:
            raise self._close_error

    def _emit(self, event: RoomEvent) -> None:
        if self._backlog is not None and len(self._backlog) < self.options.max_events:
            self._backlog.append(event)
        for reader in self._readers:
            _put_dropping(reader, event)
        for kind, callbacks in self._callbacks.items():
            if isinstance(event, kind):
                for callback in callbacks:
                    try:
                        result = callback(event)
                    except Exception:
                        # The application's bug must not stop the room's event pump.
                        log.exception("callback %r for %s failed", callback, type(event).__name__)
                        continue
                    if asyncio.iscoroutine(result):
                        self._spawn(result, f"callback:{type(event).__name__}")

    # -- public API: media ----------------------------------------------------------------------

    async def publish(self, track: MediaStreamTrack, *, source: str | None = None, muted: bool = False) -> LocalTrackPublication:
        """Publish an aiortc track (a file via ``MediaPlayer``, a generated tone, a TTS stream).

        ``source``: ``camera``/``microphone`` (the default by kind), ``screen``, ``screen-audio``.
        Returns once the SFU accepted it; raises :class:`RequestError` if it refused. The track
        is published again by itself after a media reconnect.
        """
        self._check_open()
        source = source or ("microphone" if track.kind == "audio" else "camera")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        publication = LocalTrackPublication(track, source, muted)
        if publication.id in self._publications:
            raise ValueError(f"track {publication.id} is already published")
        self._publications[publication.id] = publication
        try:
            await self._submit(_Work("publish"))
        except BaseException:
            self._publications.pop(publication.id, None)
            raise
        return publication

    async def unpublish(self, publication: LocalTrackPublication) -> None:
        """Stop publishing (the others see ``track-unpublished``); the track is not stopped."""
        self._check_open()
        if self._publications.pop(publication.id, None) is None:
            return
        await self._submit(_Work("unpublish", {"track": publication.id}))

    async def set_muted(self, publication: LocalTrackPublication, muted: bool) -> None:
        """Tell the room we muted (unmuted) a published track; media keeps flowing."""
        self._check_open()
        publication.muted = muted
        await self.client.set_track_state(publication.id, muted)

    def subscribe(self, track: RemoteTrack | str) -> IncomingTrack:
        """The decoded media of ``track`` as an aiortc ``MediaStreamTrack`` (same object on
        every call). Frames flow as soon as the SFU's offer carrying it is applied."""
        self._check_open()
        if not self.decode:
            raise RoomError("this room does not decode (decode=False): use rtp(track)")
        info = self._track(track)
        incoming = self._subscriptions.get(info.id)
        if incoming is None or incoming.readyState != "live":
            incoming = IncomingTrack(info, max_frames=self.options.max_frames)
            self._subscriptions[info.id] = incoming
        return incoming

    def unsubscribe(self, track: RemoteTrack | str) -> None:
        """Stop delivering ``track``'s frames (its :class:`IncomingTrack` ends)."""
        incoming = self._subscriptions.pop(self._track_id(track), None)
        if incoming is not None:
            incoming.end()

    def rtp(self, track: RemoteTrack | str) -> RtpStream:
        """The encoded RTP packets of ``track`` (a new stream per call), without decoding."""
        self._check_open()
        info = self._track(track)
        stream = RtpStream(info, max_packets=self.options.max_packets)
        self._rtp_streams.setdefault(info.id, []).append(stream)
        return stream

    async def send_data(self, payload: Any, *, topic: str = "app", to: Sequence[str] | None = None) -> None:
        """An application message (any JSON) to every other participant, or to ``to`` only.

        Rides the signaling session: ordered, resent after a reconnect, delivered once.
        """
        self._check_open()
        await self.client.send_data(topic, payload, to=to)

    def _check_open(self) -> None:
        if self._closing or self._closed.is_set():
            raise self._close_error or Disconnected("the room is closed", self.client.close_code)

    def _track(self, track: RemoteTrack | str) -> RemoteTrack:
        if isinstance(track, RemoteTrack):
            return track
        info = self.state.tracks.get(track)
        if info is None:
            raise RoomError(f"no track {track!r} in the room")
        return info

    @staticmethod
    def _track_id(track: RemoteTrack | str) -> str:
        return track.id if isinstance(track, RemoteTrack) else track

    # -- signaling events -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"room:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("room task %s failed", task.get_name(), exc_info=error)

    async def _pump(self) -> None:
        async for event in self.client:
            self._on_client_event(event)
            if isinstance(event, sig.Closed):
                break

    def _on_client_event(self, event: sig.Event) -> None:
        match event:
            case sig.PeerJoined(peer=peer, name=name):
                self._emit_all(self.state.peer_joined(peer, name))
            case sig.PeerLeft(peer=peer, reason=reason):
                self._emit_all(self.state.peer_left(peer, reason))
            case sig.DataReceived(sender=sender, topic=topic, payload=payload, to=to):
                self._emit(DataReceived(sender, topic, payload, to))
            case sig.ServerMessage(message=message):
                self._on_server_message(message)
            case sig.ErrorReceived():
                self._on_error(event)
            case sig.Reconnecting(attempt=attempt, code=code):
                self._emit(SignalingReconnecting(attempt, code))
            case sig.Resumed():
                self._emit(SignalingResumed())
            case sig.Rejoined(peers=peers):
                # A new signaling session: the SFU knows nothing of our old connections, and
                # cseq starts over.
                self._early_replies.clear()
                self._emit_all(self.state.reset(peers))
                self._enqueue(_Work("reset", reason="rejoin"))
            case sig.Closed(code=code, reason=reason):
                self._spawn(self._closed_by_server(code, reason), "finish")

    async def _closed_by_server(self, code: int | None, reason: str) -> None:
        error = None
        if not self._closing:
            entry = Close.by_code(code) if code is not None else None
            what = entry.name if entry is not None else "closed"
            if entry is None or entry.action is not ClientAction.DONE:
                error = Disconnected(f"the room ended: {what} ({code}): {reason}", code)
        await self._finish(code, reason, error)

    def _emit_all(self, events: list[RoomEvent]) -> None:
        for event in events:
            self._emit(event)
            self._after_event(event)

    def _after_event(self, event: RoomEvent) -> None:
        if isinstance(event, TrackPublished):
            if self.decode and self._wants(event.track):
                incoming = self.subscribe(event.track)
                self._emit(TrackSubscribed(event.track, incoming))
        elif isinstance(event, TrackUnpublished):
            ended = self._subscriptions.pop(event.track.id, None)
            if ended is not None:
                ended.end()
            for stream in self._rtp_streams.pop(event.track.id, []):
                stream.end()

    def _wants(self, track: RemoteTrack) -> bool:
        policy = self.auto_subscribe
        return policy(track) if callable(policy) else bool(policy)

    def _on_server_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscriber-offer":
            self._enqueue(_Work("offer", message, generation=self._generation))
        elif kind == "reconnect" and message.get("scope") == "media":
            # Offers not applied yet came from the old SFU: dropped (docs/protocol.md).
            self._generation += 1
            self._enqueue(_Work("reset", reason="sfu-failover", delay=message.get("delay_ms", 0) / 1000))
        elif kind == "publish-answer":
            self._reply(message["cseq"], message)
        elif kind == "track-published" and message["track"]["id"] in self.state.tracks:
            # Announced again after a media reconnect: same track, subscriptions go on.
            self.state.apply(message, self.client.peer_id)
        else:
            self._emit_all(self.state.apply(message, self.client.peer_id))

    def _on_error(self, error: sig.ErrorReceived) -> None:
        if error.cseq is not None:
            self._reply(error.cseq, error)
        if error.code == "media-failed":
            if error.target == "publisher":
                self._enqueue(_Work("reset", reason="media-failed"))
            elif error.target == "subscriber":
                self._enqueue(_Work("subscriber-reset"))
        else:
            log.warning("server error %s: %s (cseq %s)", error.code, error.message, error.cseq)

    def _reply(self, cseq: int, reply: dict[str, Any] | sig.ErrorReceived) -> None:
        future = self._replies.pop(cseq, None)
        if future is None:
            # The answer overtook our registration (or answers a message that is no request,
            # e.g. a refused data message): kept a while, the oldest forgotten first.
            self._early_replies[cseq] = reply
            while len(self._early_replies) > 64:
                del self._early_replies[next(iter(self._early_replies))]
            return
        if future.done():
            return
        if isinstance(reply, sig.ErrorReceived):
            future.set_exception(RequestError(reply.code, reply.message))
        else:
            future.set_result(reply)

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` and wait for the answer naming its cseq (bounded)."""
        cseq = await self.client.send(message)
        early = self._early_replies.pop(cseq, None)
        if isinstance(early, sig.ErrorReceived):
            raise RequestError(early.code, early.message)
        if early is not None:
            return early
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[cseq] = future
        try:
            async with asyncio.timeout(self.options.request_timeout):
                return await future
        finally:
            self._replies.pop(cseq, None)

    # -- the media worker -----------------------------------------------------------------------

    def _enqueue(self, work: _Work) -> None:
        try:
            self._work.put_nowait(work)
        except asyncio.QueueFull:
            log.error("media work queue full: dropping %s", work.kind)
            if work.done is not None and not work.done.done():
                work.done.set_exception(RoomError("media work queue full"))

    async def _submit(self, work: _Work) -> None:
        work.done = asyncio.get_running_loop().create_future()
        self._enqueue(work)
        await work.done

    async def _media_worker(self) -> None:
        while True:
            work = await self._work.get()
            try:
                await self._handle(work)
            except asyncio.CancelledError:
                if work.done is not None and not work.done.done():
                    work.done.cancel()
                raise
            except Exception as exc:
                if work.done is not None and not work.done.done():
                    work.done.set_exception(exc)
                else:
                    log.exception("media work %s failed", work.kind)
            else:
                if work.done is not None and not work.done.done():
                    work.done.set_result(None)

    async def _handle(self, work: _Work) -> None:
        if work.kind == "offer":
            if work.generation == self._generation:
                await self._answer(work.message)
        elif work.kind == "publish":
            await self._negotiate_publisher()
        elif work.kind == "unpublish":
            await self._unpublish(work.message["track"])
        elif work.kind == "subscriber-reset":
            await self._close_subscriber()
        elif work.kind == "reset":
            await self._reset(work)

    def _ice_servers(self) -> list[dict[str, Any]]:
        servers = self._welcome.get("ice_servers", [])
        return servers if isinstance(servers, list) else []

    async def _answer(self, offer: dict[str, Any]) -> None:
        if self._subscriber is None:
            self._subscriber = RTCPeerConnection(rtc_configuration(self._ice_servers(), self.ice))
            self._routes = {}
            self._subscriber.on("track", self._on_remote_track)
        pc = self._subscriber
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        before_gathering(pc, self.ice)
        await pc.setLocalDescription(await pc.createAnswer())
        await self.client.send({"type": "subscriber-answer", "sdp": pc.localDescription.sdp})
        tracks = offer_tracks(offer["sdp"])
        codecs = offer_codecs(offer["sdp"])
        for transceiver in pc.getTransceivers():
            route = self._routes.get(str(transceiver.mid))
            if route is not None:
                route.track_id = tracks.get(str(transceiver.mid))
                route.codecs = codecs.get(str(transceiver.mid), {})

    def _on_remote_track(self, track: MediaStreamTrack) -> None:
        pc = self._subscriber
        assert pc is not None
        transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
        route = _Route(transceiver.receiver, track.kind)
        self._routes[str(transceiver.mid)] = route
        if self.decode:
            self._tee_rtp(route)
            self._spawn(self._consume(route, track), f"decode:{transceiver.mid}")
        else:
            route.tap = ReceiverTap(transceiver.receiver, _RawTapEvents(self, route), self._probe)

    def _tee_rtp(self, route: _Route) -> None:
        """Also hand the encoded packets of a decoding m-line to :meth:`rtp` streams.

        Wraps the receiver's ``_handle_rtp_packet`` per instance (aiortc 1.16.0 internals,
        pinned; sfu/aiortc_hooks.py checks the shape at import).
        """
        receiver: Any = route.receiver
        original = receiver._handle_rtp_packet

        async def handle(packet: Any, arrival_time_ms: int) -> None:
            if route.track_id is not None and route.track_id in self._rtp_streams:
                self._deliver_rtp(route, InboundRtp(
                    ssrc=packet.ssrc, payload_type=packet.payload_type,
                    sequence_number=packet.sequence_number, timestamp=packet.timestamp,
                    marker=packet.marker, payload=packet.payload, padding_size=packet.padding_size,
                    audio_level=packet.extensions.audio_level,
                ))
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle

    def _deliver_rtp(self, route: _Route, packet: InboundRtp) -> None:
        track_id = route.track_id
        if track_id is None:
            return
        streams = self._rtp_streams.get(track_id)
        if not streams:
            return
        mime, clock = route.codecs.get(packet.payload_type, ("", 0))
        if mime.lower().endswith("/rtx") or (packet.padding_size and not packet.payload):
            return
        rtp = RtpPacket(
            track_id=track_id, ssrc=packet.ssrc, payload_type=packet.payload_type,
            sequence_number=packet.sequence_number, timestamp=packet.timestamp, marker=bool(packet.marker),
            payload=bytes(packet.payload), mime_type=mime, clock_rate=clock,
            audio_level=packet.audio_level[1] if packet.audio_level is not None else None,
        )
        for stream in streams:
            stream.deliver(rtp)

    async def _consume(self, route: _Route, track: MediaStreamTrack) -> None:
        """Drain one m-line's decoded frames (aiortc's queue is unbounded) and route them."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if route.track_id is None:
                continue
            incoming = self._subscriptions.get(route.track_id)
            if incoming is not None:
                incoming.deliver(frame)

    async def _negotiate_publisher(self) -> None:
        if not self._publications:
            return
        if self._publisher is None:
            self._publisher = RTCPeerConnection(rtc_configuration(self._ice_servers(), self.ice))
        pc = self._publisher
        sending = {t.sender.track.id for t in pc.getTransceivers() if t.sender.track is not None}
        for publication in self._publications.values():
            if publication.id not in sending:
                transceiver = pc.addTransceiver(SenderTrack(publication.track), "sendonly")
                _prefer_codec(transceiver, publication.kind)
        before_gathering(pc, self.ice)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._request({
            "type": "publish", "sdp": pc.localDescription.sdp,
            "tracks": [p.describe() for p in self._publications.values()][:16],
        })
        if pc is self._publisher:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def _unpublish(self, track_id: str) -> None:
        pc = self._publisher
        if pc is not None:
            for transceiver in pc.getTransceivers():
                if transceiver.sender.track is not None and transceiver.sender.track.id == track_id:
                    transceiver.sender.replaceTrack(None)
        await self.client.send({"type": "unpublish", "track": track_id})

    async def _reset(self, work: _Work) -> None:
        """Rebuild both connections and publish again (SFU failover, rejoin, media-failed)."""
        await self._close_connections()
        if work.delay > 0:
            await asyncio.sleep(work.delay)
        self.media_reconnects += 1
        if self._publications:
            try:
                await self._negotiate_publisher()
            except RequestError as exc:
                # Caught in a move (sfu-unavailable): the reconnect that follows publishes again.
                log.warning("publishing again after %s failed: %s", work.reason, exc)
                return
        self._emit(MediaReconnected(work.reason, self.local_peer))

    async def _close_subscriber(self) -> None:
        pc, self._subscriber = self._subscriber, None
        self._routes = {}
        if pc is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.close_timeout):
                    await pc.close()

    async def _close_connections(self) -> None:
        pc, self._publisher = self._publisher, None
        if pc is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.close_timeout):
                    await pc.close()
        await self._close_subscriber()


def _prefer_codec(transceiver: Any, kind: str) -> None:
    """Offer only the room's codec for ``kind`` (and its RTX)."""
    wanted = PUBLISH_CODECS[kind]
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in codecs if c.mimeType.split("/", 1)[1].lower() == wanted.lower()][:1]
    rtx = [c for c in codecs if c.mimeType.lower().endswith("/rtx")]
    if chosen:
        transceiver.setCodecPreferences(chosen + rtx)


def _put_dropping(queue: asyncio.Queue[Any], item: Any) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
