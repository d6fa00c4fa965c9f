"""The forwarding path: a published track fans its packets out to subscriber slots.

A :class:`PublishedTrack` is one sending m-line of a publisher. A :class:`Slot` is one sending
m-line (transceiver) of a subscriber; it carries at most one track at a time and is recycled
for another track of the same kind and codec when its track goes away, because aiortc cannot
remove an m-line from a peer connection (without recycling, a long-lived subscriber's SDP would
grow with every publisher that came and went).

Packets flow synchronously inside the publisher receiver's handling (no queue, no task): the
delay through the SFU is the time to rewrite, SRTP-protect and send to each subscriber.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from sfu.aiortc_hooks import ReceiverTap, SenderPort, SenderTap
from sfu.clock import abs_send_time, ntp_from_unix
from sfu.ingest import IngestCounters, IngestFilter, MediaPacket
from sfu.keyframe import keyframe_detector
from sfu.layers import SimulcastForwarder
from sfu.metrics import ForwardingCounters
from sfu.packets import InboundRtp, ReceiveInfo, SenderReport
from sfu.ratelimit import KeyframeRequestLimiter
from sfu.remb import RembPolicy
from sfu.rewrite import StreamRewriter
from sfu.speakers import LevelAccumulator

logger = logging.getLogger(__name__)

_serials = itertools.count(1)


class MediaSink(Protocol):
    """A consumer of a track's media besides subscribers (a recording): must never block."""

    def on_media(self, media: MediaPacket) -> bool:
        """One de-duplicated media packet; return True to ask the publisher for a keyframe."""

    def on_sender_report(self, report: SenderReport) -> None:
        """The publisher's sender report for this track's stream."""


class PublishedTrack:
    """One track a publisher sends, and the slots it is forwarded to."""

    def __init__(
        self,
        *,
        track_id: str,
        publisher: str,
        kind: str,
        codec: str,
        mid: str,
        msid_track: str | None,
        counters: ForwardingCounters,
        keyframe_interval: float,
        remb_ttl: float,
        source: str | None = None,
        self_muted: bool = False,
        level_threshold: int = 35,
        rids: tuple[str, ...] = (),
    ) -> None:
        self.id = track_id
        #: camera, microphone, screen or screen-audio, as the publisher said (else by kind).
        self.source = source or ("microphone" if kind == "audio" else "camera")
        #: The publisher muted it itself (its own media sends silence or black): forwarded as is.
        self.self_muted = self_muted
        #: Audio level accumulator (audio tracks): feeds the room's active-speaker detection.
        self.level: LevelAccumulator | None = LevelAccumulator(level_threshold) if kind == "audio" else None
        self.publisher = publisher
        self.kind = kind
        self.codec = codec
        self.mid = mid
        self.msid_track = msid_track
        #: Identifies this track in rewriter sources: two tracks never share a sequence space.
        self.serial = next(_serials)
        self.tap: ReceiverTap | None = None
        self._ingest: IngestFilter | None = None
        self._slots: list[Slot] = []
        self._counters = counters
        self._limiter = KeyframeRequestLimiter(keyframe_interval)
        self._remb = RembPolicy(remb_ttl)
        self._is_keyframe = keyframe_detector(codec) if kind == "video" else None
        self.packets_forwarded = 0
        self.bytes_forwarded = 0
        self.closed = False
        #: Muted by an operator: packets are still ingested (dedup state stays right) but go
        #: nowhere. Each unmute starts a new generation, which subscribers treat like a new
        #: source: they wait for a keyframe and keep their sequence numbers continuous.
        self.muted = False
        self._generation = 0
        #: Recordings of this track (fed before the subscribers, off their path: see recorder).
        self.sinks: list[MediaSink] = []
        #: Simulcast (a video m-line offering several rids): per-layer ingest and selection.
        self.simulcast: SimulcastForwarder | None = (
            SimulcastForwarder(self, rids, keyframe_interval, self._is_keyframe)
            if kind == "video" and len(rids) > 1
            else None
        )

    @property
    def public(self) -> dict[str, Any]:
        """The ``track`` object of ``track-published`` / ``track-unpublished`` / ``track-state``."""
        return {
            "id": self.id, "peer": self.publisher, "kind": self.kind, "source": self.source,
            "muted": self.self_muted, "operator_muted": self.muted,
        }

    @property
    def ingest_counters(self) -> IngestCounters:
        if self.simulcast is not None:
            return self.simulcast.ingest_counters()
        return self._ingest.counters if self._ingest is not None else IngestCounters()

    def start(self, info: ReceiveInfo) -> None:
        """The publisher's receiver is configured: packets can be understood from now on."""
        if self._ingest is None:
            self._ingest = IngestFilter(info)
        if self.simulcast is not None:
            self.simulcast.start(info)

    def close(self) -> None:
        self.closed = True
        for slot in list(self._slots):
            slot.detach()

    def attach(self, slot: Slot) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def remove(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        self._remb.remove_subscriber(slot)
        if self.simulcast is not None:
            self.simulcast.remove(slot)

    def stats(self) -> dict[str, object]:
        ingest = self.ingest_counters
        return {
            **self.public,
            "codec": self.codec,
            "mid": self.mid,
            "subscribers": len(self._slots),
            "packets_in": ingest.packets,
            "bytes_in": ingest.bytes,
            "rtx_unwrapped": ingest.rtx_unwrapped,
            "padding_dropped": ingest.padding_dropped,
            "duplicates_dropped": ingest.duplicates_dropped,
            "packets_forwarded": self.packets_forwarded,
            "bytes_forwarded": self.bytes_forwarded,
            "keyframe_requests_sent": self._limiter.allowed,
            "keyframe_requests_suppressed": self._limiter.suppressed,
            **({"audio_level_dbov": -self.level.last} if self.level is not None else {}),
            **(self.simulcast.stats() if self.simulcast is not None else {}),
        }

    # -- publisher side -------------------------------------------------------------------

    async def on_rtp(self, packet: InboundRtp) -> None:
        """Forward one packet. Never raises: an error here would kill the publisher's link."""
        try:
            if self.simulcast is not None:
                await self.simulcast.forward(packet, time.perf_counter_ns())
                return
            await self._forward(packet, time.perf_counter_ns())
        except asyncio.CancelledError:
            raise
        except Exception:  # boundary: aiortc's receive loop must survive our bugs
            self._counters.forward_errors += 1
            logger.exception("forwarding a packet of track %s failed", self.id)

    async def _forward(self, packet: InboundRtp, received_ns: int) -> None:
        ingest = self._ingest
        if ingest is None or self.closed:
            return
        media = ingest.accept(packet)
        if media is None or self.muted:
            return
        level = self.level
        if level is not None and media.audio_level is not None and not self.self_muted:
            level.add(media.audio_level[1])
        if self.sinks:
            wants = False
            for sink in tuple(self.sinks):
                wants = sink.on_media(media) or wants
            if wants:
                await self.request_keyframe()
        if not self._slots:
            return
        source = (self.serial, media.epoch, self._generation)
        now = time.monotonic()
        ntp = ntp_from_unix(time.time())
        send_time = abs_send_time(ntp)
        keyframe: bool | None = None
        want_keyframe = False
        counters = self._counters
        # Totals are added once per packet, after the loop (per-subscriber attribute updates
        # were a measurable share of the forwarding loop); the finally keeps them right even
        # if a send raises through.
        forwarded = octets = 0
        record_delay = counters.delays.add
        clock_ns = time.perf_counter_ns
        marker, payload, padding_size = media.marker, media.payload, media.padding_size
        audio_level, extended_seq, timestamp = media.audio_level, media.extended_seq, media.timestamp
        try:
            for slot in tuple(self._slots):
                rewriter, port = slot.rewriter, slot.port
                if slot.attached is not self or rewriter is None or port is None:
                    continue
                if rewriter.source != source:
                    # A new subscriber, or the publisher restarted its stream: start at a keyframe.
                    if self._is_keyframe is not None:
                        if keyframe is None:
                            keyframe = self._is_keyframe(media.payload)
                        if not keyframe:
                            want_keyframe = True
                            continue
                    rewriter.restart(source, extended_seq, timestamp, now)
                mapped = rewriter.map(source, extended_seq, timestamp, now)
                if mapped is None:
                    continue
                try:
                    # Fast path (synchronous, no RtpPacket); None when this packet needs aiortc's.
                    sent = port.send_now(
                        marker, mapped[0], mapped[1], payload, padding_size, audio_level, send_time, ntp,
                    )
                    if sent is None:
                        sent = await port.send_slow(
                            marker=marker,
                            sequence_number=mapped[0],
                            timestamp=mapped[1],
                            payload=payload,
                            padding_size=padding_size,
                            audio_level=audio_level,
                            abs_send_time=send_time,
                            ntp_time=ntp,
                        )
                except ConnectionError:
                    counters.send_errors += 1
                    slot.detach()
                    continue
                forwarded += 1
                octets += sent
                record_delay((clock_ns() - received_ns) // 1000)
        finally:
            self.packets_forwarded += forwarded
            self.bytes_forwarded += octets
            counters.packets_forwarded += forwarded
            counters.bytes_forwarded += octets
        if want_keyframe:
            await self.request_keyframe()

    def on_sender_report(self, report: SenderReport) -> None:
        if self._ingest is not None and report.ssrc == self._ingest.media_ssrc:
            for sink in tuple(self.sinks):
                sink.on_sender_report(report)

    def on_upstream_estimate(self, bitrate: int) -> int:
        if self.simulcast is not None:
            return bitrate  # layers serve weak subscribers: never clamp the publisher
        value = self._remb.on_upstream_estimate(bitrate, time.monotonic())
        if value < bitrate:
            self._counters.remb_clamped_upstream += 1
        return value

    def set_muted(self, muted: bool) -> bool:
        """Mute or unmute; return whether anything changed."""
        if muted == self.muted:
            return False
        self.muted = muted
        if not muted:
            self._generation += 1
        return True

    async def request_keyframe(self, slot: Slot | None = None) -> None:
        """Ask the publisher for a keyframe, at most once per interval (video only).

        Simulcast: for the layer ``slot`` forwards or waits for (every wanted layer if None).
        """
        if self.simulcast is not None:
            await self.simulcast.request_keyframe(slot)
            return
        if self.kind != "video" or self.tap is None or self._ingest is None:
            return
        ssrc = self._ingest.media_ssrc
        if ssrc is None:
            return
        if not self._limiter.try_acquire(time.monotonic()):
            self._counters.pli_suppressed += 1
            return
        self._counters.pli_sent_upstream += 1
        await self.tap.send_pli(ssrc)

    async def on_subscriber_estimate(self, slot: Slot, bitrate: int) -> None:
        if self.simulcast is not None:
            await self.simulcast.on_estimate(slot, bitrate)
            return
        value = self._remb.on_subscriber_estimate(slot, bitrate, time.monotonic())
        ssrc = self._ingest.media_ssrc if self._ingest is not None else None
        if value is not None and ssrc is not None and self.tap is not None:
            self._counters.remb_sent_upstream += 1
            await self.tap.send_remb(value, ssrc)


class ReceiverRoute:
    """The events of one publisher transceiver, routed to whichever track it carries now.

    A browser reuses a transceiver (mid) for a new track after ``removeTrack``; the receiver
    tap stays, the track behind it changes.
    """

    def __init__(self) -> None:
        self.track: PublishedTrack | None = None
        self.tap: ReceiverTap | None = None
        self.info: ReceiveInfo | None = None
        #: The codec forced on this m-line the first time it sent (the receiver keeps it).
        self.codec: str | None = None

    def assign(self, track: PublishedTrack | None) -> None:
        self.track = track
        if track is not None:
            track.tap = self.tap
            if self.info is not None:
                track.start(self.info)

    async def on_rtp(self, packet: InboundRtp) -> None:
        track = self.track
        if track is not None:
            await track.on_rtp(packet)

    def on_receiver_started(self, info: ReceiveInfo) -> None:
        self.info = info
        if self.track is not None:
            self.track.start(info)

    def on_upstream_estimate(self, bitrate: int) -> int:
        track = self.track
        return bitrate if track is None else track.on_upstream_estimate(bitrate)

    def on_sender_report(self, report: SenderReport) -> None:
        track = self.track
        if track is not None:
            track.on_sender_report(report)


class Slot:
    """One sending transceiver on a subscriber's peer connection."""

    def __init__(
        self,
        *,
        subscriber: str,
        kind: str,
        codec: str,
        counters: ForwardingCounters,
        transceiver: Any,
        make_tap: Callable[[Slot], SenderTap],
    ) -> None:
        self.subscriber = subscriber
        #: The aiortc transceiver (public API: its ``direction`` is all we change).
        self.transceiver = transceiver
        self.kind = kind
        self.codec = codec
        self._counters = counters
        #: The track this slot should carry (what the next offer announces).
        self.track: PublishedTrack | None = None
        #: The track the last applied answer accepted on this slot.
        self.negotiated: PublishedTrack | None = None
        #: The track currently forwarded into this slot.
        self.attached: PublishedTrack | None = None
        self.port: SenderPort | None = None
        self.rewriter: StreamRewriter | None = None
        self.closed = False
        #: Simulcast: the quality the subscriber asked for (``low``/``medium``/``high``/``off``)
        #: and who hears which layer it actually gets (``track-layer``).
        self.quality = "high"
        self.on_layer: Callable[[Slot, PublishedTrack, dict[str, Any]], None] | None = None
        self.tap = make_tap(self)

    async def try_attach(self) -> None:
        """Start forwarding once the track is negotiated and the sender is up."""
        track = self.track
        if (
            self.closed
            or track is None
            or track.closed
            or self.negotiated is not track
            or self.port is None
            or self.attached is track
        ):
            return
        self.detach()
        self.attached = track
        track.attach(self)
        # A new subscriber needs a keyframe (it is held at the gate until one starts).
        await track.request_keyframe(self)

    def detach(self) -> None:
        track = self.attached
        if track is not None:
            self.attached = None
            track.remove(self)
        if self.rewriter is not None:
            self.rewriter.detach()

    def close(self) -> None:
        self.closed = True
        self.detach()

    # -- SenderEvents -----------------------------------------------------------------------

    async def on_sender_started(self, port: SenderPort) -> None:
        self.port = port
        # Random start points, as aiortc's own sender does (lower half: SRTP-friendly).
        self.rewriter = StreamRewriter(
            port.clock_rate, random.randrange(1 << 15), random.randrange(1 << 32)
        )
        await self.try_attach()

    async def on_keyframe_request(self) -> None:
        self._counters.pli_from_subscribers += 1
        if self.attached is not None:
            await self.attached.request_keyframe(self)

    async def on_remb(self, bitrate: int, ssrc_count: int) -> None:
        # A REMB covers all the streams it lists: give each an equal share.
        self._counters.remb_from_subscribers += 1
        if self.attached is not None:
            await self.attached.on_subscriber_estimate(self, bitrate // max(1, ssrc_count))

    def on_nack(self, lost: int) -> None:
        self._counters.nack_from_subscribers += lost

    def on_retransmit(self, served: bool) -> None:
        if served:
            self._counters.retransmissions_served += 1
        else:
            self._counters.retransmissions_missed += 1
