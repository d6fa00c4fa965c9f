"""An SFU node of a cluster: ``switchboard sfu --redis URL``.

One process, one :class:`sfu.service.Sfu`, no client connections. It

- registers in the node registry (``kind="sfu"``, its capacity in rooms) and heart-beats every
  ``cluster.heartbeat_interval`` with its load (rooms it hosts), so signaling nodes place rooms
  on it (``NodeRegistry.place``);
- reads the requests for the rooms placed on it from its request stream (``p sfu-rpc:<node>``,
  one reader task) and runs them: in stream order per participant (one *lane* per participant:
  a publish is applied before the candidates that follow it), concurrently across participants,
  so one slow negotiation does not hold up a room;
- answers each request on the reply stream of the signaling node that asked;
- sends what the SFU says to clients on its own (``emit``: subscriber offers, track events) to
  the peers through :class:`~signaling.cluster.redis_backend.PeerSender`, from one bounded, ordered
  outbox drained by one task (the SFU's ``emit`` is synchronous and must never block);
- on SIGTERM (or ``POST /admin/drain`` with ``--admin-token``) drains: marks itself draining (no
  new rooms). Signaling nodes then hand its rooms over to other SFU nodes while it still forwards
  (make before break: each client is told ``reconnect {scope: media}``, joined on the new node,
  and left here). It waits up to ``drain_timeout`` for its rooms to be gone, deregisters (what is
  left moves at once: signaling nodes see the node gone), closes the SFU and exits 0.

``/healthz``, ``/readyz`` (registered, request reader in sync, not draining) and ``/metrics`` are
served on a small HTTP port. aiortc is imported only when the node is built.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from signaling import __version__
from signaling.backend import BackendUnavailable
from signaling.backend.media import MEDIA_REFUSALS, Emit, MediaPort
from signaling.cluster.redis_backend import PeerSender, make_client
from signaling.cluster.registry import NodeInfo, NodeRegistry
from signaling.cluster.remote_media import StreamReader, append
from signaling.core.backoff import Backoff
from signaling.core.config import ServerConfig
from signaling.core.sfu_rpc import (
    CODES,
    SFU_ERROR,
    VIA,
    Reply,
    Request,
    RpcFormatError,
    reply_stream,
    request_stream,
)
from signaling.runtime.metrics import MediaCollector, TaskCollector
from signaling.runtime.tasks import OwnerKind, TaskRegistry

log = logging.getLogger(__name__)

#: Deadline of every Redis call of the node.
OP_TIMEOUT = 2.0
#: How long one XREAD BLOCK of the request reader waits.
READ_BLOCK = 1.0
#: How long ``start`` keeps trying to reach Redis before the process gives up.
START_TIMEOUT = 10.0

#: Told when a room starts (True) or stops (False) being hosted here.
RoomsChanged = Callable[[str, bool], None]
#: Sends one reply for one request.
ReplySink = Callable[[Request, Reply], Awaitable[None]]


class RpcExecutor:
    """Runs requests against a :class:`~signaling.backend.media.MediaPort`: in order per participant.

    No Redis here (unit-tested with a fake SFU): requests come in through :meth:`submit`, answers
    go out through ``reply``. Each participant has a lane (a bounded FIFO with at most one task
    draining it); the task ends when its lane is empty, so idle participants cost nothing.
    """

    def __init__(
        self,
        media: MediaPort,
        reply: ReplySink,
        *,
        tasks: TaskRegistry,
        lane_size: int = 256,
        on_rooms: RoomsChanged | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._media = media
        self._reply = reply
        self._tasks = tasks
        self._lane_size = lane_size
        self._on_rooms = on_rooms
        self._clock = clock
        self._lanes: dict[tuple[str, str], deque[Request]] = {}
        #: Rooms with at least one joined participant -> those participants: the node's load.
        self.rooms: dict[str, set[str]] = {}
        #: Requests run, by op.
        self.ran: Counter[str] = Counter()
        #: Requests refused by code (``busy`` for a full lane).
        self.refused: Counter[str] = Counter()
        #: Requests skipped because their caller had stopped waiting.
        self.expired = 0

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def submit(self, request: Request) -> bool:
        """Queue ``request`` behind the participant's earlier ones; False if its lane is full."""
        key = (request.room, request.participant)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
            lane.append(request)
            self._tasks.spawn(self._drain(key, lane), name=f"sfu-lane:{request.room}:{request.participant}",
                              owner=f"room:{request.room}", kind=OwnerKind.ROOM)
            return True
        if len(lane) >= self._lane_size:
            self.refused["busy"] += 1
            return False
        lane.append(request)
        return True

    async def _drain(self, key: tuple[str, str], lane: deque[Request]) -> None:
        try:
            while lane:
                request = lane.popleft()
                if request.expired(self._clock()):
                    self.expired += 1
                    log.info("%s of %s in %s skipped: its caller stopped waiting", request.op, request.participant, request.room)
                    continue
                reply = await self.execute(request)
                if request.reply_to is not None:
                    await self._reply(request, reply)
        finally:
            # No await between the last emptiness check and here: a request submitted meanwhile
            # would be in this lane and have been run.
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def execute(self, request: Request) -> Reply:
        """Run one request; a refusal keeps the SFU's code, anything else is ``sfu-error``."""
        media, room, participant, args = self._media, request.room, request.participant, request.args
        result: Any = None
        try:
            match request.op:
                case "join":
                    codecs = args.get("codecs")
                    if codecs is None:
                        await media.join(room, participant, subscribe=args["subscribe"])
                    else:
                        await media.join(room, participant, subscribe=args["subscribe"], codecs=tuple(codecs))
                    self._hosted(room, participant, True)
                case "publish":
                    tracks = args.get("tracks")
                    result = await (media.publish(room, participant, args["sdp"], tracks=tracks) if tracks
                                    else media.publish(room, participant, args["sdp"]))
                case "subscriber_answer":
                    await media.subscriber_answer(room, participant, args["sdp"])
                case "add_candidate":
                    await media.add_candidate(room, participant, args["target"], args["candidate"])
                case "unpublish":
                    await media.unpublish(room, participant, args["track"])
                case "mute":
                    await media.mute(room, participant, args["track"], args["muted"])
                case "track_state":
                    await media.set_track_state(room, participant, args["track"], args["muted"])
                case "set_subscription":
                    await media.set_subscription(room, participant, args["track"], args["quality"])
                case "leave":
                    await media.leave(room, participant)
                    self._hosted(room, participant, False)
                case "play":
                    result = await media.play(
                        room, participant, args["sdp"], peer=args.get("peer"), track=args.get("track")
                    )
                case "record_start":
                    result = await media.record_start(room, directory=args["directory"], track=args.get("track"))
                case "record_stop":
                    result = await media.record_stop(room)
                case "recordings":
                    result = await media.recordings()
        except MEDIA_REFUSALS as exc:
            code = exc.code
            if code not in CODES:
                log.error("%s of %s in %s refused with unknown code %r", request.op, participant, room, code)
                code = SFU_ERROR
            self.refused[code] += 1
            return Reply.refusal(request.id, code, str(exc) or code)
        except Exception as exc:
            log.exception("%s of %s in %s failed", request.op, participant, room)
            self.refused[SFU_ERROR] += 1
            return Reply.refusal(request.id, SFU_ERROR, str(exc) or SFU_ERROR)
        self.ran[request.op] += 1
        return Reply(request.id, True, result)

    def _hosted(self, room: str, participant: str, joined: bool) -> None:
        members = self.rooms.get(room)
        if joined:
            if members is None:
                self.rooms[room] = {participant}
                if self._on_rooms is not None:
                    self._on_rooms(room, True)
            else:
                members.add(participant)
            return
        if members is None:
            return
        members.discard(participant)
        if not members:
            del self.rooms[room]
            if self._on_rooms is not None:
                self._on_rooms(room, False)


class SfuNode:
    """The SFU node: registry entry, request reader, executor, outbox. See the module docstring."""

    def __init__(self, config: ServerConfig, *, media_factory: Callable[[Emit], MediaPort] | None = None) -> None:
        """
        :param media_factory: builds the SFU around the node's ``emit`` (default: aiortc's
            :class:`sfu.service.Sfu` configured from ``config``).
        """
        if not config.redis_url:
            raise ValueError("an SFU node needs a Redis URL (--redis)")
        cluster = config.cluster
        self.config = config
        self.node_id = config.node_id
        self.prefix = config.redis_prefix
        url = config.redis_url
        self.registry = NodeRegistry(
            url, key_prefix=self.prefix, heartbeat_interval=cluster.heartbeat_interval, ttl=cluster.node_ttl, op_timeout=OP_TIMEOUT
        )
        self._redis = make_client(url, op_timeout=OP_TIMEOUT)
        self._reader_redis = make_client(url, op_timeout=OP_TIMEOUT, read_timeout=READ_BLOCK + OP_TIMEOUT, max_connections=1)
        self._sender = PeerSender(url, key_prefix=self.prefix, sender_id=self.node_id)
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=cluster.emit_queue_size)
        self.media = (media_factory or _aiortc_sfu(config))(self.emit)
        #: The reader, the lanes and placement releases.
        self._tasks = TaskRegistry("sfu-node", OwnerKind.CLUSTER)
        #: The outbox task: stopped last, after the SFU said its last word.
        self._outbox_tasks = TaskRegistry("sfu-node-outbox", OwnerKind.CLUSTER)
        self.executor = RpcExecutor(
            self.media, self._send_reply, tasks=self._tasks, lane_size=cluster.lane_size, on_rooms=self._rooms_changed
        )
        self._reader = StreamReader(
            self._reader_redis, request_stream(self.prefix, self.node_id), self._on_request, block=READ_BLOCK, op_timeout=OP_TIMEOUT
        )
        self._emptied = asyncio.Event()
        self._emptied.set()
        self.draining = False
        self._started = False
        self._closed = False
        #: Outbox figures: sent, peer unknown (it left), dropped (outbox full), failed (Redis).
        self.emitted: Counter[str] = Counter()
        self.malformed = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    async def start(self) -> None:
        """Position the request reader, register, start the tasks.

        The reader is positioned *before* the node registers: a request can only be sent once a
        room is placed here, which needs the registration, so none is skipped. Retries for up to
        :data:`START_TIMEOUT` while Redis is unreachable, then raises :class:`BackendUnavailable`.
        """
        if self._closed or self._started:
            raise RuntimeError("an SFU node starts once")
        self._started = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        backoff = Backoff(base=0.05, cap=1.0)
        info = NodeInfo(id=self.node_id, kind="sfu", address=self.address, capacity=self.config.cluster.sfu_capacity)
        while True:
            try:
                await self._reader.sync_position()
                await self.registry.register(info)
                break
            except BackendUnavailable as exc:
                delay = backoff.next_delay()
                if loop.time() + delay >= deadline:
                    raise BackendUnavailable(f"redis unreachable for {START_TIMEOUT} s at start") from exc
                log.warning("sfu node %s: start: %s; retrying", self.node_id, exc)
                await asyncio.sleep(delay)
        self._tasks.spawn(self._reader.run(), name=f"sfu-requests:{self.node_id}")
        self._outbox_tasks.spawn(self._drain_outbox(), name=f"sfu-outbox:{self.node_id}")
        log.info("sfu node %s registered (capacity %d rooms)", self.node_id, info.capacity)

    async def ready(self) -> bool:
        """Takes rooms: registered (last heartbeat reached Redis), reading requests, not draining."""
        return not self.draining and not self._closed and self._reader.healthy and await self.registry.ready()

    async def drain(self, deadline: float) -> None:
        """Take no new rooms; wait up to ``deadline`` s for the hosted ones to end."""
        self.draining = True
        try:
            await self.registry.set_draining()
        except (BackendUnavailable, RuntimeError) as exc:
            log.warning("sfu node %s: could not mark itself draining: %s", self.node_id, exc)
        if self.executor.rooms:
            log.info("sfu node %s: draining, %d room(s) hosted", self.node_id, len(self.executor.rooms))
            try:
                async with asyncio.timeout(deadline):
                    await self._emptied.wait()
            except TimeoutError:
                log.warning("sfu node %s: %d room(s) still hosted after %.1fs; they move", self.node_id, len(self.executor.rooms), deadline)

    async def close(self) -> None:
        """Deregister, stop reading, close the SFU, flush the outbox; each step bounded."""
        if self._closed:
            return
        self._closed = True
        self._reader.stop()
        # First, so signaling nodes move the remaining rooms now rather than after the TTL.
        await self.registry.close(deregister=True)
        await self._tasks.close()
        timeout = self.config.limits.close_timeout
        try:
            async with asyncio.timeout(max(timeout, 5.0)):
                await self.media.close()
        except TimeoutError:
            log.warning("sfu node %s: closing the SFU took too long", self.node_id)
        try:
            async with asyncio.timeout(timeout):
                await self._outbox.join()
        except TimeoutError:
            log.warning("sfu node %s: %d message(s) for clients not sent at close", self.node_id, self._outbox.qsize())
        await self._outbox_tasks.close()
        try:
            async with asyncio.timeout(timeout):
                await self._sender.close()
                await self._reader_redis.aclose()
                await self._redis.aclose()
        except TimeoutError:
            log.warning("sfu node %s: closing the redis connections took too long", self.node_id)

    # -- requests -------------------------------------------------------------------------------

    async def _on_request(self, fields: dict[str, str]) -> None:
        try:
            request = Request.decode(fields["m"])
        except (KeyError, RpcFormatError) as exc:
            self.malformed += 1
            log.error("sfu node %s: malformed request %r dropped: %s", self.node_id, fields, exc)
            return
        if not self.executor.submit(request):
            await self._send_reply(request, Reply.refusal(request.id, SFU_ERROR, "too many requests queued for this participant"))

    async def _send_reply(self, request: Request, reply: Reply) -> None:
        if request.reply_to is None:
            return
        cluster = self.config.cluster
        try:
            await append(
                self._redis, reply_stream(self.prefix, request.reply_to), reply.encode(),
                maxlen=cluster.rpc_stream_maxlen, ttl=cluster.rpc_stream_ttl, op_timeout=OP_TIMEOUT, what="sfu reply",
            )
        except BackendUnavailable as exc:
            # The caller's deadline turns this into sfu-unavailable on its side.
            log.warning("sfu node %s: reply to %s of %s lost: %s", self.node_id, request.op, request.participant, exc)

    def _rooms_changed(self, room: str, hosted: bool) -> None:
        if self.registry.info is not None:
            self.registry.update(load=len(self.executor.rooms))
        if hosted:
            self._emptied.clear()
            return
        if not self.executor.rooms:
            self._emptied.set()
        if not self._closed:
            self._tasks.spawn(self._release(room), name=f"sfu-release:{room}", owner=f"room:{room}", kind=OwnerKind.ROOM)

    async def _release(self, room: str) -> None:
        """The room ended here: free its placement (if it is still ours and still empty)."""
        try:
            if await self.registry.placement(room) == self.node_id and room not in self.executor.rooms:
                await self.registry.release(room)
        except BackendUnavailable as exc:
            log.warning("sfu node %s: placement of ended room %s not released: %s", self.node_id, room, exc)

    # -- the outbox -----------------------------------------------------------------------------

    def emit(self, participant: str, message: dict[str, Any]) -> None:
        """The SFU's synchronous ``emit``: queued, sent in order by one task."""
        try:
            self._outbox.put_nowait((participant, message))
        except asyncio.QueueFull:
            self.emitted["dropped"] += 1
            log.error("sfu node %s: outbox full, %s for %s dropped", self.node_id, message.get("type"), participant)

    async def _drain_outbox(self) -> None:
        while True:
            participant, message = await self._outbox.get()
            try:
                delivered = await self._sender.send(participant, {**message, VIA: self.node_id})
                self.emitted["sent" if delivered else "unknown-peer"] += 1
            except BackendUnavailable as exc:
                # Not retried: a retried append whose reply was lost would arrive twice.
                self.emitted["failed"] += 1
                log.warning("sfu node %s: %s for %s not sent: %s", self.node_id, message.get("type"), participant, exc)
            except Exception:
                self.emitted["failed"] += 1
                log.exception("sfu node %s: %s for %s not sent", self.node_id, message.get("type"), participant)
            finally:
                self._outbox.task_done()

    # -- metrics --------------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The node's own figures (the SFU's come from :class:`MediaCollector`)."""
        yield GaugeMetricFamily("switchboard_sfu_node_rooms_hosted", "Rooms with participants on this SFU node", value=len(self.executor.rooms))
        yield GaugeMetricFamily("switchboard_sfu_node_lanes", "Participants with requests queued or running", value=self.executor.lanes)
        yield GaugeMetricFamily("switchboard_sfu_node_outbox", "Messages for clients waiting to be sent", value=self._outbox.qsize())
        yield GaugeMetricFamily("switchboard_sfu_node_draining", "1 while draining", value=int(self.draining))
        ran = CounterMetricFamily("switchboard_sfu_node_requests", "Requests run, by op", labels=["op"])
        for op, n in sorted(self.executor.ran.items()):
            ran.add_metric([op], n)
        yield ran
        refused = CounterMetricFamily("switchboard_sfu_node_refusals", "Requests refused, by code", labels=["code"])
        for code, n in sorted(self.executor.refused.items()):
            refused.add_metric([code], n)
        yield refused
        yield CounterMetricFamily("switchboard_sfu_node_expired_requests", "Requests skipped: the caller had given up", value=self.executor.expired)
        emitted = CounterMetricFamily("switchboard_sfu_node_emitted", "Messages for clients, by outcome", labels=["outcome"])
        for outcome, n in sorted(self.emitted.items()):
            emitted.add_metric([outcome], n)
        yield emitted


def _aiortc_sfu(config: ServerConfig) -> Callable[[Emit], MediaPort]:
    from sfu.service import Sfu
    from signaling.core.config import sfu_settings

    # An SFU node is never in dev mode: loopback candidates need ice.allow_peers like any range.
    settings = sfu_settings(config)
    return lambda emit: Sfu(settings, emit)


# -- the process -----------------------------------------------------------------------------------

NODE: web.AppKey[SfuNode] = web.AppKey("sfu_node", SfuNode)
METRICS_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("sfu_metrics", CollectorRegistry)
#: Set by ``POST /admin/drain``: the process drains and exits as on SIGTERM.
DRAIN_REQUESTED: web.AppKey[asyncio.Event] = web.AppKey("sfu_drain_requested", asyncio.Event)


def build_sfu_app(node: SfuNode) -> web.Application:
    """The node's small HTTP surface: health, readiness, metrics; ``POST /admin/drain`` with
    ``--admin-token`` (a bare 404 without one, like a signaling node's admin API)."""
    registry = CollectorRegistry()
    registry.register(MediaCollector(node.media.stats))
    registry.register(node)
    registry.register(TaskCollector())
    app = web.Application()
    app[NODE] = node
    app[METRICS_REGISTRY] = registry
    app[DRAIN_REQUESTED] = asyncio.Event()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/admin/drain", _drain_handler(node.config))
    return app


def _drain_handler(config: ServerConfig) -> Callable[[web.Request], Awaitable[web.Response]]:
    from signaling.core.ratelimit import FailureThrottle
    from signaling.server.admin import bearer_ok

    token = config.admin_token
    throttle = FailureThrottle(config.security.admin_failure_rate, config.security.admin_failure_burst)

    async def drain(request: web.Request) -> web.Response:
        if token is None:
            raise web.HTTPNotFound()
        address = request.remote or ""
        now = asyncio.get_running_loop().time()
        if throttle.blocked(address, now):
            raise web.HTTPTooManyRequests(text='{"error":"too many wrong admin tokens"}', content_type="application/json")
        if not bearer_ok(request, token):
            throttle.failed(address, now)
            raise web.HTTPUnauthorized(text='{"error":"unauthorized"}', content_type="application/json")
        request.app[DRAIN_REQUESTED].set()
        return web.json_response({"draining": True})

    return drain


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__, "node": request.app[NODE].node_id})


async def _readyz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    ready = await node.ready()
    body = {"ready": ready, "draining": node.draining, "rooms": len(node.executor.rooms)}
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_sfu(config: ServerConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run an SFU node until SIGTERM or SIGINT, then drain and return (the process exits 0)."""
    node = SfuNode(config)
    app = build_sfu_app(node)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=config.limits.close_timeout)
    await runner.setup()
    stop = app[DRAIN_REQUESTED]  # SIGTERM, SIGINT or POST /admin/drain
    loop = asyncio.get_running_loop()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.start()
        print(f"switchboard sfu node {config.node_id} listening on http://{config.host}:{config.port}/", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("sfu node %s: draining (up to %.1fs)", config.node_id, config.drain_timeout)
        await node.drain(config.drain_timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await node.close()
        await runner.cleanup()
    log.info("sfu node %s stopped", config.node_id)
