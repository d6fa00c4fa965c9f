"""Configuration of a signaling node.

Every timing and limit lives here and is passed in; nothing reads module globals, so tests build a
config with small, scaled values instead of patching anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from signaling.core import media_limits

if TYPE_CHECKING:
    from sfu.config import SfuConfig


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """Application-level heartbeat: the server pings, the client answers ``pong``."""

    #: Seconds between two server pings (each one jittered by ``jitter``). Keep it under 30 s:
    #: proxies and NATs drop connections idle for longer.
    interval: float = 10.0
    #: Seconds of total silence from the client after which the server closes with 4013.
    timeout: float = 20.0
    #: Relative jitter applied to every interval (0.1 = ±10 %), so pings of many clients spread.
    jitter: float = 0.1
    #: The silence timeout of a session adapts to its link: at least ``timeout``, and at least the
    #: longest ping interval plus ``rtt_factor`` x (RTT p99 + RTT jitter) measured from its pongs,
    #: capped at ``max_timeout`` (the worst time to detect a dead link; at or below ``timeout``:
    #: no adaptation). Announced in every ping.
    rtt_factor: float = 4.0
    max_timeout: float = 40.0


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Resumable sessions: replay buffer bounds and the grace period of a dropped socket."""

    #: Seconds a session whose socket dropped stays in its room, waiting for a resume.
    grace_period: float = 20.0
    #: Seconds of detachment after which the other peers hear ``peer-reconnecting``.
    reconnecting_notice_after: float = 2.0
    #: Most unacknowledged server→client messages kept for replay.
    replay_max_messages: int = 512
    #: Most bytes of unacknowledged server→client messages kept for replay.
    replay_max_bytes: int = 1024 * 1024
    #: Seconds between samples of the task-leak alarm (tasks outliving their session); 0 turns it off.
    leak_sample_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Input limits; everything a client sends is bounded."""

    #: Largest text frame accepted (bytes). Larger frames get ``too-large`` and are dropped.
    #: Sized for the largest subscriber answer of a room at its track limit (210 KiB; the
    #: arithmetic is in :mod:`signaling.core.media_limits`).
    max_message_bytes: int = media_limits.DEFAULT.frame_bytes
    #: Frames larger than this cannot even be read: the socket closes with 1009.
    hard_max_message_bytes: int = 1024 * 1024
    #: Largest ``signal.data`` payload once encoded (bytes).
    max_signal_bytes: int = 32 * 1024
    #: Largest ``data.payload`` (application messages, chat) once encoded (bytes).
    max_data_bytes: int = 16 * 1024
    #: Seconds a new connection has to send ``join``.
    join_timeout: float = 10.0
    #: Errors a connection may cause before it is closed with 4010.
    max_errors: int = 20
    #: Frames waiting to be written to one client; a client that lets it fill is closed with 4009.
    send_queue_size: int = 256
    #: Seconds a close handshake may take before the transport is aborted.
    close_timeout: float = 2.0
    #: Seconds the hub's shutdown may take in all (closing connections, ending sessions): with
    #: Redis down, ending N sessions one after another would otherwise take N Redis timeouts.
    #: Sessions not ended by then are abandoned; their members expire with the node.
    shutdown_timeout: float = 10.0
    #: Seconds a new TCP connection has to send a complete HTTP request head (request line and
    #: headers); then it is aborted. Counted from accept, before aiohttp parses anything.
    head_timeout: float = 10.0
    #: Seconds an idle kept-alive HTTP connection (between two requests) stays open.
    keepalive_timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """Who gets in and how much they may do. See docs/security.md for the threat model."""

    #: Access-token keys as (kid, secret) pairs; empty = dev mode (loopback only, no auth).
    token_keys: tuple[tuple[str, str], ...] = ()
    #: Browser origins allowed on /ws (exact ``scheme://host[:port]``); empty = any.
    allowed_origins: tuple[str, ...] = ()
    #: Open connections per client address: TCP connections at accept time (before a byte is
    #: parsed; past it a bare 429 and close) and WebSocket sessions in ``/ws``.
    max_connections_per_ip: int = 500
    #: New connections per second per client address (token bucket rate and burst).
    connection_rate_per_ip: float = 50.0
    connection_burst_per_ip: float = 200.0
    #: Frames per second per connection (token bucket); exceeding it closes 4008.
    message_rate: float = 100.0
    message_burst: float = 300.0
    #: Seconds a rate-limited client is told to wait (``retry_after_ms``).
    rate_limit_retry_after: float = 1.0
    #: ``data`` messages per second per session (token bucket); beyond it a message is refused
    #: with ``rate-limited`` (and ``retry_after_ms``), the connection goes on.
    data_rate: float = 20.0
    data_burst: float = 50.0
    #: Participants in one room (across the cluster).
    max_participants_per_room: int = media_limits.ROOM_PARTICIPANTS
    #: Sending audio m-lines, and sending video m-lines, in one participant's publisher offer;
    #: beyond it the offer is refused ``too-many-tracks``.
    max_tracks_per_kind: int = media_limits.TRACKS_PER_KIND
    #: Published tracks in one room (250: camera and microphone for 100 participants, a screen
    #: share for a quarter of them); beyond it a publisher offer is refused ``too-many-tracks``.
    max_tracks_per_room: int = media_limits.DEFAULT.tracks
    #: Rooms with participants on this node.
    max_rooms: int = 10_000
    #: Trickled ICE candidates per session.
    max_candidates_per_session: int = 200
    #: Lines in one SDP blob: the largest subscriber answer of a room at its track limit
    #: (6,516; see :mod:`signaling.core.media_limits`).
    max_sdp_lines: int = media_limits.DEFAULT.sdp_lines
    #: Wrong admin tokens per client address (token bucket); past it every admin request from
    #: that address gets 429 until the bucket refills.
    admin_failure_rate: float = 0.5
    admin_failure_burst: float = 10.0
    #: Bearer token required on ``/metrics`` (wherever it is served); None: no token.
    metrics_token: str | None = None
    #: Reverse proxies (CIDR) whose ``X-Forwarded-For`` is believed: behind them the client is the
    #: rightmost address that is not one of them, for the ``/ws`` per-address limits and the logs.
    #: Empty: the header is ignored (the TCP peer is the client). See docs/operations.md.
    trusted_proxies: tuple[str, ...] = ()
    #: Open TCP connections from one trusted proxy, counted at accept time (where only the
    #: proxy's address is known): at least the clients it serves at once plus its keepalive pool.
    max_connections_per_proxy: int = 20_000


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Signed webhooks (HMAC-SHA256) for room, participant and track events."""

    #: Receivers; empty = no webhooks.
    urls: tuple[str, ...] = ()
    #: Shared secret for the ``X-Switchboard-Signature`` header.
    secret: str | None = None
    #: Events waiting for delivery; beyond it new events are dropped and counted.
    queue_size: int = 1000


@dataclass(frozen=True, slots=True)
class IceConfig:
    """What clients and the SFU use to traverse NATs."""

    #: STUN URLs handed to clients in ``welcome``.
    stun_urls: tuple[str, ...] = ()
    #: TURN URLs (``turn:``/``turns:``) handed to clients with ephemeral credentials.
    turn_urls: tuple[str, ...] = ()
    #: TURN REST shared secrets; the first signs, all are accepted by coturn during rotation.
    turn_secrets: tuple[str, ...] = ()
    #: Lifetime of ephemeral TURN credentials (seconds).
    turn_ttl: int = 4 * 3600
    #: Local addresses the SFU gathers ICE host candidates on (empty: every interface).
    host_addresses: tuple[str, ...] = ()
    #: Address announced in host candidates instead of the local one (1:1 NAT).
    announce_ip: str | None = None
    #: UDP ports the SFU's ICE sockets bind in, as "LOW-HIGH" (empty: the OS picks ephemeral ports).
    port_range: str = ""
    #: Remote ICE candidate ranges (CIDR) the SFU may contact although they are refused by
    #: default (private, loopback, link-local, CGNAT, multicast, metadata; see
    #: ``sfu/candidate_policy.py``). Dev mode (no token keys) adds loopback.
    allow_peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Timings and bounds of a Redis cluster: node registry, SFU nodes and their RPC streams.

    Only read with ``redis_url`` set. Failover time after an SFU node dies is about
    ``node_ttl + failover_interval`` (detection) plus one media renegotiation.
    """

    #: Rooms one SFU node takes (``switchboard sfu --capacity``); placement never exceeds it.
    sfu_capacity: int = 100
    #: Seconds between two registry heartbeats of a node (signaling or SFU).
    heartbeat_interval: float = 2.0
    #: A node whose registry entry was not refreshed for this long is dead and its rooms move.
    #: About three heartbeats: one lost beat must not kill a live node.
    node_ttl: float = 6.0
    #: Seconds a media request to an SFU node may take before it fails with ``sfu-unavailable``.
    rpc_timeout: float = 10.0
    #: Seconds between two placement checks of the rooms a signaling node has media in (the
    #: failover watcher).
    failover_interval: float = 1.0
    #: Approximate bound (entries) of each RPC request and reply stream.
    rpc_stream_maxlen: int = 10_000
    #: An RPC stream nobody wrote to for this long is deleted by Redis (seconds).
    rpc_stream_ttl: float = 300.0
    #: SFU→client messages waiting on an SFU node to be sent through Redis; past it they are
    #: dropped and counted (the SFU's emit is synchronous and must never block).
    emit_queue_size: int = 4096
    #: Requests of one participant waiting on an SFU node; past it a request is refused.
    lane_size: int = 256
    #: Durable before confirmed: replicas that must have each session-ledger write and each
    #: relayed message (``WAIT``) before the frame goes to the socket or the client's ``cseq``
    #: is confirmed. None (default): 1 with a ``redis+sentinel://`` URL, 0 (no wait) otherwise.
    #: With N > 0 and fewer than N replicas reachable, frames wait and the node is not ready.
    ledger_wait_replicas: int | None = None
    #: Seconds one ``WAIT`` may take; fewer replicas by then is a failed write (retried).
    #: Must stay below the Redis call deadline (2 s).
    ledger_wait_timeout: float = 0.5


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``switchboard serve`` needs."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: Also listen on this unix socket (behind a local reverse proxy; admin access from outside
    #: a network namespace).
    unix_path: str | None = None
    #: Identifies this node in logs, metrics and (with Redis) the node registry.
    node_id: str = "node-1"
    #: Bearer token of the admin API; None disables ``/admin`` entirely.
    admin_token: str | None = None
    #: Own listener for the admin API and ``/metrics`` (neither is then served on host:port).
    #: None: both are served on the main listener.
    admin_host: str | None = None
    admin_port: int | None = None
    #: TLS certificate and key (PEM) for the HTTP/WS listener: browsers on other machines need
    #: a secure context for getUserMedia.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Seconds a drain waits for clients to leave before the process exits anyway.
    drain_timeout: float = 10.0
    #: ``reconnect.delay_ms`` announced to clients when draining.
    drain_reconnect_delay_ms: int = 0
    #: Serve the bundled SFU in this process.
    sfu: bool = True
    #: Redis URL: this node joins a cluster (state and message bus in Redis). None: memory.
    redis_url: str | None = None
    #: Prefix of every Redis key of this cluster (several clusters can share one Redis).
    redis_prefix: str = "sb:"
    #: Where recordings go when ``POST /admin/rooms/{room}/recording`` names no ``dir`` (on the
    #: SFU node that holds the room, in a cluster). Relative paths are from the working directory.
    recording_dir: str = "recordings"
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    ice: IceConfig = field(default_factory=IceConfig)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)


def sfu_settings(config: ServerConfig, *, dev_mode: bool = False) -> SfuConfig:
    """The SFU's network settings from the node's config (embedded SFU and SFU nodes alike).

    ``dev_mode`` (an embedded SFU without token keys, which only ever serves loopback) also
    lets ICE contact loopback candidates; SFU nodes and production servers need
    ``ice.allow_peers`` for that.
    """
    from sfu.candidate_policy import LOOPBACK_NETWORKS
    from sfu.config import SfuConfig

    hosts = config.ice.host_addresses
    if not hosts and config.host in ("127.0.0.1", "localhost", "::1"):
        # A node only reachable on loopback has only loopback clients: gather nothing else.
        hosts = ("127.0.0.1",) if config.host != "::1" else ("::1",)
    ports = None
    if config.ice.port_range:
        low, _, high = config.ice.port_range.partition("-")
        ports = (int(low), int(high))
    allow = config.ice.allow_peers + (LOOPBACK_NETWORKS if dev_mode else ())
    return SfuConfig(
        host_addresses=hosts, announce_ip=config.ice.announce_ip, port_range=ports,
        ice_allow_peers=allow,
        max_tracks_per_kind=config.security.max_tracks_per_kind,
        max_tracks_per_room=config.security.max_tracks_per_room,
    )
