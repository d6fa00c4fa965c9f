"""The aiohttp application of one signaling node and the process that serves it.

``build_app`` wires config, backend, hub, metrics and media into an ``aiohttp.web.Application``
(media: the in-process SFU by default; with Redis, :class:`~signaling.cluster.remote_media.RemoteMedia`,
which sends media calls to the cluster's SFU nodes); ``serve`` runs it until SIGTERM/SIGINT and
then drains: stop taking connections, tell every client to reconnect (``reconnect`` + close
1001), wait up to ``drain_timeout``, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from signaling import __version__
from signaling.backend import Backend, MemoryBackend
from signaling.backend.media import MediaPort
from signaling.core import protocol
from signaling.core.config import ServerConfig, sfu_settings
from signaling.core.forwarded import TrustedProxies
from signaling.core.ratelimit import IpLimiter
from signaling.runtime.metrics import MediaCollector, Metrics, ReplicaCollector
from signaling.server import admin, whip_http
from signaling.server.accept import AcceptThrottle, AddressCounter, GuardedSite
from signaling.server.admin import DRAIN_REQUESTED
from signaling.server.connection import Connection
from signaling.server.hub import Hub
from signaling.server.ticker import Ticker, resolution_for
from signaling.server.webhooks import WebhookSender
from signaling.turn.credentials import check_ice_config, ice_servers

if TYPE_CHECKING:  # loaded only when used: redis-py by cluster nodes
    from signaling.cluster.remote_media import RemoteMedia
    from signaling.server.sfu_workers import WorkerPool

log = logging.getLogger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
CONFIG: web.AppKey[ServerConfig] = web.AppKey("config", ServerConfig)
IP_LIMITER: web.AppKey[IpLimiter] = web.AppKey("ip_limiter", IpLimiter)
#: Open TCP connections per address, counted at accept time (see signaling.server.accept).
ACCEPTED: web.AppKey[AddressCounter] = web.AppKey("accepted", AddressCounter)
#: The admin API and /metrics when they have their own listener (``admin_port``).
ADMIN_APP: web.AppKey[web.Application] = web.AppKey("admin_app", web.Application)
#: Reverse proxies whose X-Forwarded-For is believed (``security.trusted_proxies``).
TRUSTED_PROXIES: web.AppKey[TrustedProxies] = web.AppKey("trusted_proxies", TrustedProxies)
#: The SFU worker pool of ``--sfu-workers N`` (absent otherwise): its registry and workers.
SFU_WORKERS: web.AppKey[WorkerPool] = web.AppKey("sfu_workers")
#: The node's one heartbeat driver (every connection's pings and silence deadlines).
TICKER: web.AppKey[Ticker] = web.AppKey("ticker", Ticker)


def make_runner(app: web.Application, config: ServerConfig, *, shutdown_timeout: float | None = None) -> web.AppRunner:
    """The runner of a node's app: idle kept-alive connections close after ``keepalive_timeout``."""
    return web.AppRunner(
        app, handle_signals=False,
        shutdown_timeout=config.drain_timeout if shutdown_timeout is None else shutdown_timeout,
        keepalive_timeout=config.limits.keepalive_timeout,
    )


def listener(
    runner: web.AppRunner, config: ServerConfig, host: str | None, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> GuardedSite:
    """A TCP site whose connections are counted per address at accept time and must send their
    request head within ``limits.head_timeout`` (signaling.server.accept)."""
    app = runner.app
    metrics = app[METRICS]

    def refused(_address: str) -> None:
        metrics.rejected_connections.labels("accept-limit").inc()

    return GuardedSite(runner, host, port, counter=app[ACCEPTED], head_timeout=config.limits.head_timeout,
                       ssl_context=ssl_context, on_refused=refused)


def static_dir() -> Path:
    """The bundled page: inside the package when installed as a wheel, else the repo's static/."""
    package = Path(__file__).resolve().parents[1]  # signaling/
    for candidate in (package / "_static", package.parent / "static"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError("bundled static/ directory not found")


def build_app(
    config: ServerConfig,
    *,
    backend: Backend | None = None,
    media: MediaPort | None = None,
) -> web.Application:
    metrics = Metrics()
    check_ice_config(config.ice)
    registry = None
    if config.redis_url:
        from signaling.cluster.redis_backend import RedisBackend
        from signaling.cluster.registry import NodeRegistry
        from signaling.core.redis_url import resolve_wait_replicas

        cluster = config.cluster
        if backend is None:
            # A node is alive (and reaped when not) on the same clock as its registry entry.
            backend = RedisBackend(
                config.redis_url, key_prefix=config.redis_prefix,
                alive_interval=cluster.heartbeat_interval, alive_ttl=cluster.node_ttl,
                op_timeout=cluster.op_timeout, block=cluster.read_block, start_timeout=cluster.start_timeout,
                inbox_maxlen=cluster.inbox_maxlen, inbox_ttl=cluster.inbox_ttl, session_ttl=cluster.session_ttl,
                tombstone_ttl=cluster.tombstone_ttl, ledger_max_queued=cluster.ledger_max_queued,
                wait_replicas=resolve_wait_replicas(cluster.ledger_wait_replicas, config.redis_url),
                wait_timeout=cluster.ledger_wait_timeout,
            )
        registry = NodeRegistry(
            config.redis_url, key_prefix=config.redis_prefix,
            heartbeat_interval=cluster.heartbeat_interval, ttl=cluster.node_ttl, op_timeout=cluster.op_timeout,
        )
    hub = Hub(
        config,
        backend or MemoryBackend(),
        metrics,
        media=media,
        # Fresh ephemeral TURN credentials for every welcome, resumes included.
        ice_servers=lambda peer: ice_servers(config.ice, peer, time.time()),
        webhooks=_webhooks(config),
        registry=registry,
    )
    remote: RemoteMedia | None = None
    pool: WorkerPool | None = None
    if media is None and config.sfu:
        if config.redis_url:
            # A cluster node runs no SFU: media goes to the SFU nodes that hold the rooms.
            hub.media = remote = _remote_media(config, hub)
            hub.media_current = remote.is_current
        elif config.sfu_workers:
            # The same RPC and placement, to SFU worker processes of this node (no Redis).
            pool, remote = _worker_media(config, hub)
            hub.media = remote
            hub.media_current = remote.is_current
        else:
            hub.media = _in_process_sfu(config, hub)
    if hub.media is not None:
        metrics.registry.register(MediaCollector(hub.media.stats))
    if config.redis_url and isinstance(hub.backend, RedisBackend) and hub.backend.durable.enabled:
        metrics.registry.register(ReplicaCollector(hub.backend.durable))
    app = web.Application()
    app[HUB] = hub
    app[METRICS] = metrics
    app[CONFIG] = config
    app[DRAIN_REQUESTED] = asyncio.Event()
    if pool is not None:
        app[SFU_WORKERS] = pool
    sec = config.security
    app[IP_LIMITER] = IpLimiter(sec.max_connections_per_ip, sec.connection_rate_per_ip, sec.connection_burst_per_ip)
    app[TRUSTED_PROXIES] = TrustedProxies(sec.trusted_proxies)
    ticker = app[TICKER] = Ticker(resolution_for(config.heartbeat.interval))

    async def on_startup(app: web.Application) -> None:
        if pool is not None:
            await pool.start()
        ticker.start()
        await hub.start()
        if remote is not None:
            await remote.start()

    async def on_cleanup(app: web.Application) -> None:
        await hub.close()
        if pool is not None:
            await pool.shutdown()
        await ticker.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app[ACCEPTED] = AddressCounter(sec.max_connections_per_ip, sec.max_connections_per_proxy, app[TRUSTED_PROXIES].trusts)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/protocol/v1/schema.json", schema_handler)
    if config.admin_port is None:
        app.router.add_get("/metrics", metrics_handler)
        admin.add_routes(app, hub, config.admin_token)
    else:
        # The operators' side on its own listener (``serve`` starts it): neither the admin API
        # nor the metrics are reachable where clients connect.
        side = web.Application()
        side[HUB] = hub
        side[METRICS] = metrics
        side[CONFIG] = config
        side[DRAIN_REQUESTED] = app[DRAIN_REQUESTED]
        side[ACCEPTED] = AddressCounter(sec.max_connections_per_ip, sec.max_connections_per_proxy, app[TRUSTED_PROXIES].trusts)
        side.router.add_get("/metrics", metrics_handler)
        side.router.add_get("/healthz", healthz)
        admin.add_routes(side, hub, config.admin_token)
        app[ADMIN_APP] = side
    whip_http.add_routes(app, hub)
    root = static_dir()

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    # The files at the top of static/, and only those: its test/ directory (the JS SDK's node
    # tests) is not served. Names are looked up, never joined to a path.
    static_files = {path.name: path for path in root.iterdir() if path.is_file()}

    async def static_file(request: web.Request) -> web.FileResponse:
        path = static_files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app.router.add_get("/", index)

    async def whep_player(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "whep.html")

    app.router.add_get("/whep.html", whep_player)
    app.router.add_get("/static/{name}", static_file)
    return app


def _webhooks(config: ServerConfig) -> WebhookSender | None:
    hooks = config.webhooks
    if not hooks.urls or not hooks.secret:
        return None
    return WebhookSender(list(hooks.urls), hooks.secret, node=config.node_id, queue_size=hooks.queue_size)


def _in_process_sfu(config: ServerConfig, hub: Hub) -> MediaPort:
    """The embedded SFU. aiortc is imported only here: signaling-only nodes never load it."""
    from sfu.service import Sfu

    dev_mode = not config.security.token_keys
    return Sfu(sfu_settings(config, dev_mode=dev_mode), hub.router.emit, on_track=hub.router.on_track, on_recording=hub.router.on_recording)


def _remote_media(config: ServerConfig, hub: Hub) -> RemoteMedia:
    """Media of a cluster node: RPC to the SFU nodes, failover watcher (see remote_media)."""
    from signaling.cluster.remote_media import RemoteMedia

    assert config.redis_url is not None
    cluster = config.cluster
    return RemoteMedia(
        config.redis_url,
        node_id=config.node_id,
        emit=hub.router.emit,
        key_prefix=config.redis_prefix,
        room_members=hub.backend.members,
        rpc_timeout=cluster.rpc_timeout,
        failover_interval=cluster.failover_interval,
        stream_maxlen=cluster.rpc_stream_maxlen,
        stream_ttl=cluster.rpc_stream_ttl,
        heartbeat_interval=cluster.heartbeat_interval,
        node_ttl=cluster.node_ttl,
        op_timeout=cluster.op_timeout,
        block=cluster.read_block,
        close_timeout=config.limits.close_timeout,
    )


def _worker_media(config: ServerConfig, hub: Hub) -> tuple[WorkerPool, RemoteMedia]:
    """Media of an embedded node with ``--sfu-workers N``: the cluster's port over local workers."""
    from signaling.cluster.remote_media import RemoteMedia
    from signaling.server.sfu_workers import WorkerPool

    pool = WorkerPool(
        config, workers=config.sfu_workers, deliver=hub.deliver,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
    )
    cluster = config.cluster
    remote = RemoteMedia(
        None,
        registry=pool.registry,
        transport=pool,
        node_id=config.node_id,
        emit=hub.router.emit,
        room_members=hub.backend.members,
        rpc_timeout=cluster.rpc_timeout,
        failover_interval=cluster.failover_interval,
        close_timeout=config.limits.close_timeout,
    )
    return pool, remote


def client_address(request: web.Request) -> str:
    """The client's address: the TCP peer, or behind a trusted proxy the rightmost untrusted
    ``X-Forwarded-For`` entry (signaling.core.forwarded). Never the header of an untrusted peer."""
    peer = request.remote or ""
    proxies = request.app[TRUSTED_PROXIES]
    if not proxies:
        return peer
    return proxies.client_address(peer, request.headers.getall("X-Forwarded-For", ()))


async def websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    config = request.app[CONFIG]
    if hub.draining:
        raise web.HTTPServiceUnavailable(text="draining", headers={"Retry-After": "1"})
    metrics = request.app[METRICS]
    origins = config.security.allowed_origins
    origin = request.headers.get("Origin")
    # Non-browser clients send no Origin; a browser page from elsewhere must be allowed by name.
    if origins and origin is not None and origin not in origins:
        metrics.rejected_connections.labels("origin").inc()
        raise web.HTTPForbidden(text=f"origin {origin} is not allowed")
    limiter = request.app[IP_LIMITER]
    ip = client_address(request)
    refusal = limiter.admit(ip, asyncio.get_running_loop().time())
    if refusal is not None:
        metrics.rejected_connections.labels("ip-limit").inc()
        raise web.HTTPTooManyRequests(text=refusal, headers={"Retry-After": "1"})
    try:
        return await _serve_websocket(request, hub, config, ip)
    finally:
        limiter.release(ip)


async def _serve_websocket(request: web.Request, hub: Hub, config: ServerConfig, ip: str) -> web.StreamResponse:
    ws = web.WebSocketResponse(
        max_msg_size=config.limits.hard_max_message_bytes,
        timeout=config.limits.close_timeout,
        autoping=True,
        # The connection answers a client's close itself, echoing its code (RFC 6455 section
        # 5.5.1): aiohttp would answer 1000, which tells a browser SDK "session over" while
        # the server only detached the session.
        autoclose=False,
    )
    try:
        await ws.prepare(request)
    except ConnectionResetError:
        # The client vanished during the upgrade (a cut mid-handshake): nothing to serve, and
        # nothing worth more than a debug line (anyone can do it, as often as they like). The
        # half-prepared ws must not go back to aiohttp: finishing it would raise "Call .prepare()
        # first" and log an ERROR traceback per connection. A plain response fails to write on
        # the dead transport, which aiohttp takes quietly.
        log.debug("connection from %s reset during the upgrade", ip)
        return web.Response(status=400, text="connection reset during the upgrade")
    conn = Connection(
        ws,
        config=config,
        metrics=request.app[METRICS],
        ticker=request.app[TICKER],
        transport=request.transport,
        remote=ip,
    )
    await hub.run_connection(conn)
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    backend_ready = await hub.backend.ready() and (hub.registry is None or await hub.registry.ready())
    ready = backend_ready and not hub.draining
    body = {"ready": ready, "draining": hub.draining, "backend": backend_ready}
    return web.json_response(body, status=200 if ready else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    token = request.app[CONFIG].security.metrics_token
    if token is not None and not admin.bearer_ok(request, token):
        raise web.HTTPUnauthorized(text="metrics need a bearer token\n", headers={"WWW-Authenticate": "Bearer"})
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def schema_handler(request: web.Request) -> web.Response:
    return web.json_response(protocol.schema())


async def serve(config: ServerConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run a node until SIGTERM or SIGINT, then drain and return (the process exits 0)."""
    app = build_app(config)
    loop = asyncio.get_running_loop()
    throttle = AcceptThrottle(loop)
    throttle.install()
    runner = make_runner(app, config)
    await runner.setup()
    ssl_context = None
    if config.tls_cert and config.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    await listener(runner, config, config.host, config.port, ssl_context=ssl_context).start()
    if config.unix_path is not None:
        await web.UnixSite(runner, config.unix_path).start()
    admin_runner: web.AppRunner | None = None
    if ADMIN_APP in app:
        admin_runner = make_runner(app[ADMIN_APP], config, shutdown_timeout=config.limits.close_timeout)
        await admin_runner.setup()
        admin_host = config.admin_host or "127.0.0.1"
        assert config.admin_port is not None
        await listener(admin_runner, config, admin_host, config.admin_port).start()
        log.info("admin API and /metrics on http://%s:%d", admin_host, config.admin_port)
    stop = app[DRAIN_REQUESTED]
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheme = "https" if ssl_context is not None else "http"
    log.info("switchboard %s listening on %s://%s:%d (node %s)", __version__, scheme, config.host, config.port, config.node_id)
    print(f"switchboard listening on {scheme}://{config.host}:{config.port}/", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("draining (up to %.1fs)", config.drain_timeout)
        await app[HUB].drain(config.drain_timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if admin_runner is not None:
            await admin_runner.cleanup()
        await runner.cleanup()
        throttle.uninstall()
    log.info("stopped")

