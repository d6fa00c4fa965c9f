"""Rooms of SDK + aiortc participants on an impaired network, and what they lived through.

Shared by the integration test (tests/media/test_media_impaired.py) and ``bench/impaired.py``.

The network:

* **signaling** goes through the TCP fault proxy (tests/faultproxy.py) in front of the server:
  one-way latency ± jitter per direction and random short outages (stalls; cuts that RST every
  connection and make clients resume);
* **media** goes through coturn, and every client reaches coturn only through the UDP
  impairment relay (tests/udp_impair.py): the server's ``welcome`` names the relay as the TURN
  server and every peer connection uses ``iceTransportPolicy: "relay"``. ICE checks, DTLS, TURN
  refreshes, RTP, RTCP, NACKs and retransmissions all cross the impaired last mile, in both
  directions; coturn ↔ SFU is the (clean) data-centre side.

In each room one participant publishes video; the others subscribe. Every participant sends
numbered ``signal`` messages to every other one at a fixed pace; the receivers check that each
number arrives exactly once and in order. :class:`Outcome` is what a run reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from signaling.client import ClientError, Closed, Reconnecting, Rejoined, Resumed, SignalReceived
from signaling.core.backoff import Backoff
from tests.conftest import eventually
from tests.faultproxy import FaultProxy
from tests.media.peers import Participant, Publisher, Subscriber
from tests.netem import Impairment, OutageConfig
from tests.udp_impair import ImpairedUdpRelay

#: A gap between two decoded frames longer than this is a freeze.
FREEZE = 0.5


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    #: Signaling: one-way latency and jitter per direction (seconds), bytes/s (0 = unlimited).
    latency: float = 0.0
    jitter: float = 0.0
    rate: int = 0
    outages: OutageConfig | None = None
    #: Media, client → coturn and coturn → client.
    up: Impairment = field(default_factory=Impairment)
    down: Impairment = field(default_factory=Impairment)

    def describe(self) -> str:
        if self == NetworkProfile(self.name):
            return "clean loopback"
        media = self.up
        parts = [
            f"RTT {2 * (self.latency * 1000):.0f} ms ±{self.jitter * 1000:.0f}",
            f"media loss {media.mean_loss:.0%}" + (" in bursts" if media.bursts else ""),
        ]
        if self.outages:
            parts.append(
                f"signaling outages every ~{self.outages.every:g} s "
                f"({self.outages.shortest:g}-{self.outages.longest:g} s stalls, {self.outages.cuts:.0%} cuts)"
            )
        return ", ".join(parts)


@dataclass
class Outcome:
    """What one run of a profile measured."""

    profile: str
    clients: int
    seconds: float
    retained: int = 0
    rejoins: int = 0
    closed: int = 0
    signals_sent: int = 0
    signals_delivered: int = 0
    signals_lost: int = 0
    signals_duplicated: int = 0
    signals_out_of_order: int = 0
    resumes: int = 0
    resume_latencies: list[float] = field(default_factory=list)
    outages: int = 0
    cuts: int = 0
    heartbeat_timeouts: int = 0
    frames_sent: int = 0
    frames_expected: int = 0
    frames_decoded: int = 0
    freezes: int = 0
    #: ``media-failed`` errors the clients got, by target (publisher / subscriber).
    media_failed: dict[str, int] = field(default_factory=dict)
    #: Subscriber connections renewed (after ``media-failed``, or found closed by an offer).
    subscriber_renewed: int = 0
    subscriber_closed_silently: int = 0
    subscriber_minutes: float = 0.0
    media: dict[str, float] = field(default_factory=dict)

    @property
    def retained_share(self) -> float:
        return self.retained / self.clients if self.clients else 0.0

    @property
    def decoded_share(self) -> float:
        return self.frames_decoded / self.frames_expected if self.frames_expected else 0.0

    @property
    def freezes_per_minute(self) -> float:
        return self.freezes / self.subscriber_minutes if self.subscriber_minutes else 0.0

    def resume_ms(self, q: float) -> float | None:
        if not self.resume_latencies:
            return None
        ordered = sorted(self.resume_latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Room:
    def __init__(self, name: str, publisher: Publisher, subscribers: list[Subscriber]) -> None:
        self.name = name
        self.publisher = publisher
        self.subscribers = subscribers

    @property
    def members(self) -> list[Participant]:
        return [self.publisher, *self.subscribers]


class ImpairedRooms:
    """``rooms`` rooms of ``size`` participants behind ``proxy`` (signaling) and ``relay`` (media)."""

    def __init__(
        self,
        proxy: FaultProxy,
        relay: ImpairedUdpRelay,
        *,
        rooms: int,
        size: int,
        signal_every: float,
        backoff: Callable[[int], Backoff],
        patience: float,
    ) -> None:
        assert size >= 2, "a room needs a publisher and a subscriber"
        self.proxy = proxy
        self.relay = relay
        self.room_count = rooms
        self.size = size
        self.signal_every = signal_every
        self.backoff = backoff
        self.patience = patience
        self.rooms: list[Room] = []
        self._started: list[Participant] = []
        #: (sender name, receiver name) -> numbers sent so far.
        self.sent: dict[tuple[str, str], int] = {}
        self._signalling: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.started_at = 0.0
        self.stopped_at = 0.0

    async def start(self) -> None:
        """Join everybody, publish, and return once every subscriber decodes video."""
        seed = 0
        for r in range(self.room_count):
            room = f"impaired-{r}"
            subscribers = []
            for i in range(self.size - 1):
                seed += 1
                sub = Subscriber(self.proxy.url, room, f"{room}-sub{i}", backoff=self.backoff(seed), relay=True)
                self._started.append(sub)
                await sub.start()
                subscribers.append(sub)
            seed += 1
            pub = Publisher(self.proxy.url, room, f"{room}-pub", backoff=self.backoff(seed), relay=True)
            self._started.append(pub)
            await pub.start()
            self.rooms.append(Room(room, pub, subscribers))
        await asyncio.gather(*(room.publisher.publish() for room in self.rooms))
        await asyncio.gather(
            *(sub.wait_decoding() for room in self.rooms for sub in room.subscribers)
        )
        # Everybody knows everybody's peer id before the numbered signals start.
        for room in self.rooms:
            for member in room.members:
                others = {m.peer_id for m in room.members if m is not member}
                await member.wait_for(lambda m=member, o=others: o <= set(m.client.peers), what="peers known")

    def begin(self) -> None:
        """Start the numbered signals; the measured window starts now."""
        self.started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        for room in self.rooms:
            for member in room.members:
                self._signalling.append(loop.create_task(self._signal(room, member)))

    async def _signal(self, room: Room, sender: Participant) -> None:
        receivers = [(m.name, m.peer_id) for m in room.members if m is not sender]
        while not self._stop.is_set():
            for name, peer in receivers:
                key = (sender.name, name)
                n = self.sent.get(key, 0) + 1
                try:
                    await sender.client.signal(peer, {"n": n, "from": sender.name})
                except ClientError:  # closed for good: counted as not retained
                    return
                self.sent[key] = n
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.signal_every)

    async def end(self) -> None:
        """Stop the numbered signals and close the measured window."""
        self.stopped_at = time.monotonic()
        self._stop.set()
        await asyncio.gather(*self._signalling)

    def _numbers(self, receiver: Participant) -> dict[str, list[int]]:
        """Signal numbers ``receiver`` got, per sender name, in arrival order."""
        got: dict[str, list[int]] = {}
        for event in receiver.events:
            if isinstance(event, SignalReceived) and isinstance(event.data, dict) and "n" in event.data:
                got.setdefault(str(event.data["from"]), []).append(int(event.data["n"]))
        return got

    def _all_delivered(self) -> bool:
        for room in self.rooms:
            for member in room.members:
                got = self._numbers(member)
                for other in room.members:
                    if other is not member and len(got.get(other.name, [])) < self.sent.get((other.name, member.name), 0):
                        return False
        return True

    async def drain(self) -> None:
        """Wait (bounded) until every signal sent has arrived or the patience runs out."""
        with contextlib.suppress(TimeoutError):
            await eventually(self._all_delivered, timeout=self.patience)

    def outcome(self, profile: str, metrics_before: dict[str, float], metrics_after: dict[str, float]) -> Outcome:
        seconds = self.stopped_at - self.started_at
        out = Outcome(profile=profile, clients=len(self._started), seconds=seconds)
        for member in self._started:
            rejoined = any(isinstance(e, Rejoined) for e in member.events)
            closed = any(isinstance(e, Closed) for e in member.events)
            out.rejoins += rejoined
            out.closed += closed
            out.retained += not (rejoined or closed)
            for error in member.errors():
                if error.code == "media-failed":
                    key = error.target or "?"
                    out.media_failed[key] = out.media_failed.get(key, 0) + 1
            pending: float | None = None
            for event, at in zip(member.events, member.event_times, strict=True):
                if isinstance(event, Reconnecting) and pending is None:
                    pending = at
                elif isinstance(event, Resumed):
                    out.resumes += 1
                    if pending is not None:
                        out.resume_latencies.append(at - pending)
                    pending = None
        for room in self.rooms:
            for member in room.members:
                got = self._numbers(member)
                for other in room.members:
                    if other is member:
                        continue
                    sent = self.sent.get((other.name, member.name), 0)
                    numbers = got.get(other.name, [])
                    unique = set(numbers)
                    out.signals_sent += sent
                    out.signals_delivered += len(unique & set(range(1, sent + 1)))
                    out.signals_lost += len(set(range(1, sent + 1)) - unique)
                    out.signals_duplicated += len(numbers) - len(unique)
                    out.signals_out_of_order += sum(1 for a, b in itertools.pairwise(numbers) if b <= a)
            self._media(room, out)
        out.outages = len(self.proxy.outages)
        out.cuts = sum(1 for o in self.proxy.outages if o.kind.value == "cut")
        out.media = {k: metrics_after.get(k, 0.0) - metrics_before.get(k, 0.0) for k in metrics_after}
        out.heartbeat_timeouts = int(out.media.get("switchboard_heartbeat_timeouts_total", 0))
        up, down = self.relay.stats()
        out.media["relay_up_seen"], out.media["relay_up_dropped"] = up.seen, up.dropped
        out.media["relay_down_seen"], out.media["relay_down_dropped"] = down.seen, down.dropped
        return out

    def _media(self, room: Room, out: Outcome) -> None:
        start, stop = self.started_at, self.stopped_at
        sent_at = room.publisher.video.sent_at
        window = [i for i, t in enumerate(sent_at) if start <= t <= stop]
        if not window:
            return
        first, last = window[0], window[-1]
        expected = set(range(first, last + 1))
        out.frames_sent += len(expected)
        for sub in room.subscribers:
            out.subscriber_renewed += sub.resets
            out.subscriber_closed_silently += sub.lost
            out.frames_expected += len(expected)
            out.frames_decoded += len(expected & sub.decoded())
            times = [t for r in sub.received.values() if r.kind == "video" for t in r.frame_times if start <= t <= stop]
            edges = [start, *sorted(times), stop]
            out.freezes += sum(1 for a, b in itertools.pairwise(edges) if b - a > FREEZE)
            out.subscriber_minutes += (stop - start) / 60

    async def close(self) -> None:
        self._stop.set()
        for task in self._signalling:
            task.cancel()
        await asyncio.gather(*self._signalling, return_exceptions=True)
        errors: list[BaseException] = []
        for participant in reversed(self._started):
            try:
                await participant.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def parse_metrics(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """The unlabelled samples named in ``names`` from a Prometheus text page."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        if name in names:
            values[name] = float(value)
    return values


MEDIA_METRICS = (
    "switchboard_heartbeat_timeouts_total",
    "switchboard_resumes_total",
    "switchboard_sfu_nack_from_subscribers_total",
    "switchboard_sfu_retransmissions_served_total",
    "switchboard_sfu_retransmissions_missed_total",
    "switchboard_sfu_rtx_unwrapped_total",
    "switchboard_sfu_pli_from_subscribers_total",
    "switchboard_sfu_pli_sent_upstream_total",
    "switchboard_sfu_packets_forwarded_total",
    "switchboard_sfu_subscriber_resets_total",
    "switchboard_sfu_pc_failures_total",
)


def summary(out: Outcome) -> dict[str, Any]:
    p50, p99 = out.resume_ms(0.5), out.resume_ms(0.99)
    return {
        "profile": out.profile,
        "clients": out.clients,
        "seconds": round(out.seconds, 1),
        "retained_pct": round(100 * out.retained_share, 1),
        "rejoins": out.rejoins,
        "signals_sent": out.signals_sent,
        "signals_lost": out.signals_lost,
        "signals_duplicated": out.signals_duplicated,
        "signals_out_of_order": out.signals_out_of_order,
        "outages": out.outages,
        "cuts": out.cuts,
        "resumes": out.resumes,
        "resume_p50_ms": None if p50 is None else round(p50, 1),
        "resume_p99_ms": None if p99 is None else round(p99, 1),
        "heartbeat_timeouts": out.heartbeat_timeouts,
        "frames_decoded_pct": round(100 * out.decoded_share, 1),
        "freezes_per_min": round(out.freezes_per_minute, 2),
        "media_failed": out.media_failed,
        "subscriber_renewed": out.subscriber_renewed,
        "subscriber_closed_silently": out.subscriber_closed_silently,
        "median_resume_ms": None if not out.resume_latencies else round(1000 * statistics.median(out.resume_latencies), 1),
        **{k.removeprefix("switchboard_").removesuffix("_total"): v for k, v in out.media.items()},
    }
