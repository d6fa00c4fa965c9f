"""Prometheus metrics of one node, in a registry of its own.

A registry per server (not the process-global default) lets tests run several servers in one
process and read each one's numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from signaling.runtime.tasks import OwnerKind, count_live_by_kind


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.connections = Gauge("switchboard_connections", "Open WebSocket connections", registry=r)
        self.sessions = Gauge("switchboard_sessions", "Sessions held by this node", ["state"], registry=r)
        self.rooms = Gauge("switchboard_rooms", "Rooms with at least one session on this node", registry=r)
        self.messages_in = Counter("switchboard_messages_in", "Client messages received", ["type"], registry=r)
        self.messages_out = Counter("switchboard_messages_out", "Server messages sent", ["type"], registry=r)
        self.errors = Counter("switchboard_errors", "Error messages sent to clients", ["code"], registry=r)
        self.closes = Counter("switchboard_closes", "Connections closed by the server", ["code"], registry=r)
        self.resumes = Counter("switchboard_resumes", "Sessions resumed", registry=r)
        self.resume_failures = Counter("switchboard_resume_failures", "Resumes refused", ["reason"], registry=r)
        self.heartbeat_timeouts = Counter("switchboard_heartbeat_timeouts", "Connections closed as dead (4013)", registry=r)
        self.send_queue_overflows = Counter("switchboard_send_queue_overflows", "Clients closed as too slow (4009)", registry=r)
        self.replay_overflows = Counter("switchboard_replay_overflows", "Sessions lost to a full replay buffer", registry=r)
        self.replayed = Counter("switchboard_replayed_messages", "Messages replayed after a resume", registry=r)
        self.duplicates = Counter("switchboard_duplicate_client_messages", "Client resends dropped by cseq", registry=r)
        self.auth_failures = Counter("switchboard_auth_failures", "Joins refused for their token", ["code"], registry=r)
        self.rejected_connections = Counter("switchboard_rejected_connections", "Upgrades refused before the WebSocket", ["reason"], registry=r)
        self.rtt = Histogram(
            "switchboard_rtt_seconds",
            "Heartbeat round-trip time per pong",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        r.register(TaskCollector())
        # Labelled children by message type, looked up once: ``labels()`` validates and locks on
        # every call (two per message, ~4 % of an idle server's CPU on pings and pongs).
        self._in_by_type: dict[str, Any] = {}
        self._out_by_type: dict[str, Any] = {}

    def message_in(self, kind: str) -> None:
        """Count one client message of type ``kind``."""
        child = self._in_by_type.get(kind)
        if child is None:
            child = self._in_by_type[kind] = self.messages_in.labels(kind)
        child.inc()

    def message_out(self, kind: str) -> None:
        """Count one server message of type ``kind``."""
        child = self._out_by_type.get(kind)
        if child is None:
            child = self._out_by_type[kind] = self.messages_out.labels(kind)
        child.inc()


class TaskCollector:
    """``switchboard_tasks{owner}``: live asyncio tasks of this process by owner kind, read when
    scraped (see :mod:`signaling.runtime.tasks`; tasks spawned outside a registry count as ``other``)."""

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("switchboard_tasks", "Live asyncio tasks by owner kind", labels=["owner"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("switchboard_tasks", "Live asyncio tasks by owner kind", labels=["owner"])
        try:
            counts = count_live_by_kind()
        except RuntimeError:  # scraped outside the event loop: nothing to count
            counts = dict.fromkeys(OwnerKind, 0)
        for kind, n in counts.items():
            family.add_metric([kind.value], n)
        yield family


class MediaCollector:
    """Exposes the SFU's own counters on /metrics, read when scraped (no double bookkeeping)."""

    GAUGES = ("rooms", "participants", "tracks", "peer_connections", "subscriber_transceivers", "recordings_active")
    COUNTERS = (
        "packets_in", "bytes_in", "rtx_unwrapped", "padding_dropped", "duplicates_dropped",
        "packets_forwarded", "bytes_forwarded", "send_errors", "forward_errors",
        "pli_from_subscribers", "pli_sent_upstream", "pli_suppressed", "nack_from_subscribers",
        "retransmissions_served", "retransmissions_missed", "remb_from_subscribers", "remb_sent_upstream",
        "candidates_refused",
        "recordings_started", "recordings_finished", "recordings_failed", "recording_bytes_written",
        "recording_packets_dropped",
        "pc_failures", "answers_refused", "subscriber_resets", "tracks_unavailable",
    )

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name in self.GAUGES:
            yield GaugeMetricFamily(f"switchboard_sfu_{name}", f"SFU {name.replace('_', ' ')}", value=stats.get(name, 0))
        for name in self.COUNTERS:
            yield CounterMetricFamily(f"switchboard_sfu_{name}", f"SFU {name.replace('_', ' ')}", value=stats.get(name, 0))
        transcoding = stats.get("transcoding", {})
        for name in ("frames_to_decoder", "encoder_calls"):
            # Must stay 0: the SFU forwards RTP without decoding or encoding.
            yield CounterMetricFamily(f"switchboard_sfu_{name}", f"SFU {name.replace('_', ' ')} (must stay 0)", value=transcoding.get(name, 0))


class ReplicaCollector:
    """The replica wait of a cluster node (``cluster.ledger_wait_replicas``), read when scraped."""

    def __init__(self, durable: Any) -> None:
        #: A :class:`signaling.cluster.durable.ReplicaWait` (not imported: no backend import here).
        self._durable = durable

    def collect(self) -> Iterator[Metric]:
        durable = self._durable
        yield GaugeMetricFamily("switchboard_redis_replicas_wanted", "Replicas each write waits for (0: no wait)",
                                value=durable.wanted)
        yield GaugeMetricFamily("switchboard_redis_replicas_connected",
                                "Replicas the Redis primary reported on the last write", value=durable.connected)
        yield CounterMetricFamily("switchboard_redis_unreplicated_writes",
                                  "Writes confirmed while the primary had no replica (a failover would lose them)",
                                  value=durable.unreplicated)
